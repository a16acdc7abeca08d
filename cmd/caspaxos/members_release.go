package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newMembersReleaseCmd(o *clientOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "release [NODE]",
		Short: "Free nodes held by a membership change whose controller is gone",
		Long: `Free NODE (every member when NODE is not given) of the membership change that
holds it, when that change's controller is gone: a node that removed itself, or
(with --force) a member that is down for good. A held node refuses every other
membership change, and its deletion GC waits.

A node frees itself of a change its controller no longer runs, once it can ask
that controller; this command is for the holds nobody can answer for. It is
refused (exit 1) on a node whose controller answers that it still runs the
change, and, without --force, on one held by a member that does not answer.
It prints, for each node, whether it was freed and of which change.`,
		Example: `  caspaxos members release          # every member
  caspaxos members release n3
  caspaxos members release --force  # the controller is a member down for good`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				out, err := c.MemberRelease(ctx, name, force)
				if perr := printReleases(p, out); perr != nil {
					return perr
				}
				if err != nil {
					return &opError{op: "members release", err: err}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "also free a node held by a member that does not answer (only if it is down for good)")
	return cmd
}

func printReleases(p printer, out []client.HoldRelease) error {
	if out == nil {
		out = []client.HoldRelease{}
	}
	return p.print(map[string][]client.HoldRelease{"releases": out}, func(w io.Writer) error {
		for _, r := range out {
			switch {
			case r.Released:
				fmt.Fprintf(w, "%s\tfreed of %s's change %s\n", r.Name, r.Controller, r.ChangeID)
			case r.Controller != "":
				fmt.Fprintf(w, "%s\tstill held by %s's change %s (its state changed meanwhile; try again)\n", r.Name, r.Controller, r.ChangeID)
			default:
				fmt.Fprintf(w, "%s\tnot held\n", r.Name)
			}
		}
		return nil
	})
}
