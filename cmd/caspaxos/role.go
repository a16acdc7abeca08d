package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newRoleCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Manage roles and their permissions (admin)",
		Long: `A role grants permissions: read, write or readwrite on one KEY, or with --prefix
on every key beginning with KEY (an empty KEY with --prefix: every key); or admin
(membership changes, user and role management, auth disable), which takes no KEY.
Once auth is enabled, whatever no role of a user grants is denied.`,
		Example: `  caspaxos --user root role add app
  caspaxos --user root role grant app readwrite app/ --prefix
  caspaxos --user root role grant ops admin
  caspaxos --user root role revoke app readwrite app/ --prefix
  caspaxos --user root role list`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	name := func(use, short string, fn func(*client.Client, context.Context, string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.call(cmd, func(ctx context.Context, c *client.Client, _ printer) error {
					if err := fn(c, ctx, args[0]); err != nil {
						return &opError{op: "role " + use, err: err}
					}
					return nil
				})
			},
		}
	}
	cmd.AddCommand(
		name("add", "Add a role with no permission", (*client.Client).RoleAdd),
		name("delete", "Delete a role and take it from every user", (*client.Client).RoleDelete),
		grantCmd(o, "grant", "Add a permission to a role", (*client.Client).RoleGrant),
		grantCmd(o, "revoke", "Remove a permission, exactly as granted, from a role", (*client.Client).RoleRevoke),
		&cobra.Command{
			Use: "list", Short: "List the roles and their permissions", Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
					roles, err := c.Roles(ctx)
					if err != nil {
						return &opError{op: "role list", err: err}
					}
					return p.print(map[string][]client.Role{"roles": roles}, func(w io.Writer) error {
						for _, r := range roles {
							fmt.Fprintln(w, r.Name)
							for _, g := range r.Grants {
								switch {
								case g.Perm == "admin":
									fmt.Fprintln(w, "\tadmin")
								case g.Prefix:
									fmt.Fprintf(w, "\t%s\tprefix %q\n", g.Perm, g.Key)
								default:
									fmt.Fprintf(w, "\t%s\tkey %q\n", g.Perm, g.Key)
								}
							}
						}
						return nil
					})
				})
			},
		},
	)
	return cmd
}

// grantCmd is role grant or role revoke: ROLE PERM [KEY] [--prefix].
func grantCmd(o *clientOptions, use, short string, fn func(*client.Client, context.Context, string, client.Grant) error) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use: use + " ROLE PERM [KEY]", Short: short, Args: usageArgs(cobra.RangeArgs(2, 3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g := client.Grant{Perm: args[1], Prefix: prefix}
			if len(args) == 3 {
				g.Key = args[2]
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, _ printer) error {
				if err := fn(c, ctx, args[0], g); err != nil {
					return &opError{op: "role " + use, err: err}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "KEY is a prefix: the permission covers every key beginning with it")
	return cmd
}
