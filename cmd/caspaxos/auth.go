package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newAuthCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Turn authorization on or off, or show whether it is on",
		Long: `Authorization is off until enabled: every request is then open, as before.
enable needs the user root (caspaxos user add root); from then on every request
needs credentials (--user) and is denied unless a role of its user grants it.
root always holds admin. disable needs admin and ends every token.
See docs/security.md.`,
		Example: `  caspaxos user add root:secret && caspaxos auth enable
  caspaxos --user root auth status
  caspaxos --user root:secret auth disable`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range []struct {
		use, short string
		fn         func(context.Context, *client.Client) error
	}{
		{"enable", "Turn authorization on (the user root must exist)", func(ctx context.Context, c *client.Client) error { return c.AuthEnable(ctx) }},
		{"disable", "Turn authorization off (admin)", func(ctx context.Context, c *client.Client) error { return c.AuthDisable(ctx) }},
		{"status", "Show whether authorization is on", nil},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: sub.use, Short: sub.short, Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
					if sub.fn != nil {
						if err := sub.fn(ctx, c); err != nil {
							return &opError{op: "auth " + sub.use, err: err}
						}
					}
					on, err := c.AuthStatus(ctx)
					if err != nil {
						return &opError{op: "auth " + sub.use, err: err}
					}
					return p.print(map[string]bool{"enabled": on}, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "auth enabled: %v\n", on)
						return err
					})
				})
			},
		})
	}
	return cmd
}
