package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newMembersCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members",
		Long: `List the cluster's members as the first reachable endpoint sees them: name,
id, peer address, client address (the answering node's own, and that of each
member it has reached since it started) and whether that node reaches it
now; and a membership change that node runs, with its catch-up progress
(keys done of the total).`,
		Example: `  caspaxos members
  caspaxos --endpoints 127.0.0.1:7071 members
  caspaxos members -o json | jq -r '.members[] | select(.reachable | not) | .name'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				m, err := c.Membership(ctx)
				if err != nil {
					return &opError{op: "members", err: err}
				}
				return printMembership(p, m)
			})
		},
	}
	cmd.AddCommand(newMembersAddCmd(o), newMembersRemoveCmd(o), newMembersReleaseCmd(o))
	return cmd
}
