package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newCreateCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "create KEY VALUE",
		Short: "Store a value only if the key does not exist",
		Long: `Store VALUE under KEY only if the key is absent or deleted, and print the
new version. If the key exists, nothing changes and the exit code is 4.

VALUE "-" reads the value from stdin.`,
		Example: `  caspaxos create lock/backup "$(hostname)" && run-backup
  caspaxos create config - < config.json
  caspaxos create -o json greeting hello       # {"key":"greeting","version":1}`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := keyArg(cmd, args[0])
			if err != nil {
				return err
			}
			value, err := valueArg(cmd, args[1])
			if err != nil {
				return err
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				version, err := c.Create(ctx, key, value)
				if err != nil {
					return &opError{op: "create", key: key, err: err}
				}
				return p.printVersion(key, version)
			})
		},
	}
}
