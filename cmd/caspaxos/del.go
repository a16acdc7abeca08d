package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newDelCmd(o *clientOptions) *cobra.Command {
	var ifVersion uint64
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete a key; print the tombstone's version",
		Long: `Delete KEY and print the version of the deletion (a delete is a change
like any other and gets its own version). Deleting a key that is absent
exits with code 3.

With --if-version N the key is deleted only while its version is N; otherwise
nothing changes and the exit code is 4.`,
		Example: `  caspaxos del greeting
  caspaxos del --if-version 4 lock/backup
  caspaxos del -o json greeting       # {"key":"greeting","version":5}`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := keyArg(cmd, args[0])
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("if-version") && ifVersion == 0 {
				return usagef(cmd.CommandPath(), "--if-version must be at least 1 (leave it out to delete whatever the version)")
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				version, err := c.Delete(ctx, key, ifVersion)
				if err != nil {
					return &opError{op: "del", key: key, err: err}
				}
				return p.printVersion(key, version)
			})
		},
	}
	cmd.Flags().Uint64Var(&ifVersion, "if-version", 0, "delete only while the key has this version")
	return cmd
}
