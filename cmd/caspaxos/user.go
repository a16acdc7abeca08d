package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newUserCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage users (admin; a user may change its own password)",
		Long: `Users log in with a password (--user NAME[:PASSWORD]) and hold roles, which
grant permissions (caspaxos role). The user root always holds admin. Without a
PASSWORD, add and passwd ask for it on the terminal.`,
		Example: `  caspaxos user add root:secret
  caspaxos --user root user add alice
  caspaxos --user root user grant-role alice app
  caspaxos --user alice passwd alice:newsecret
  caspaxos --user root user list`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	change := func(use, short string, n int, fn func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: exactArgs(n),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.call(cmd, func(ctx context.Context, c *client.Client, _ printer) error {
					if err := fn(ctx, c, cmd, args); err != nil {
						return &opError{op: "user " + strings.Fields(use)[0], err: err}
					}
					return nil
				})
			},
		}
	}
	withPassword := func(f func(c *client.Client, ctx context.Context, name, pw string) error) func(context.Context, *client.Client, *cobra.Command, []string) error {
		return func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			name, pw, err := namePassword(cmd, "NAME", args[0])
			if err != nil {
				return err
			}
			return f(c, ctx, name, pw)
		}
	}
	cmd.AddCommand(
		change("add NAME[:PASSWORD]", "Add a user", 1, withPassword((*client.Client).UserAdd)),
		change("passwd NAME[:PASSWORD]", "Change a user's password", 1, withPassword((*client.Client).UserPasswd)),
		change("delete NAME", "Delete a user (root only while auth is disabled)", 1, func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			return c.UserDelete(ctx, args[0])
		}),
		change("grant-role USER ROLE", "Give a user a role", 2, func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			return c.UserGrantRole(ctx, args[0], args[1])
		}),
		change("revoke-role USER ROLE", "Take a role from a user", 2, func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			return c.UserRevokeRole(ctx, args[0], args[1])
		}),
		&cobra.Command{
			Use: "list", Short: "List the users and their roles", Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
					users, err := c.Users(ctx)
					if err != nil {
						return &opError{op: "user list", err: err}
					}
					return p.print(map[string][]client.User{"users": users}, func(w io.Writer) error {
						for _, u := range users {
							fmt.Fprintf(w, "%s\t%s\n", u.Name, strings.Join(u.Roles, ","))
						}
						return nil
					})
				})
			},
		},
	)
	return cmd
}
