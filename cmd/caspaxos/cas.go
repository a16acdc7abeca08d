package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newCASCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "cas KEY VERSION VALUE",
		Short: "Compare-and-swap: store a value only while the key has a version",
		Long: `Store VALUE under KEY only while the key's version is VERSION, and print the
new version. VERSION 0 means "only while the key is absent". If the version
differs, nothing changes, the error line says the current version, and the
exit code is 4.

Versions strictly increase with every change of a key, delete and re-create
included, so a successful cas means nobody wrote the key in between.
VALUE "-" reads the value from stdin.`,
		Example: `  v=$(caspaxos get -o json counter | jq .version)
  caspaxos cas counter "$v" 42
  caspaxos cas config 7 - < config.json
  caspaxos cas -o json greeting 1 hi           # {"key":"greeting","version":2}`,
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := keyArg(cmd, args[0])
			if err != nil {
				return err
			}
			version, err := versionArg(cmd, args[1])
			if err != nil {
				return err
			}
			value, err := valueArg(cmd, args[2])
			if err != nil {
				return err
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				next, err := c.CompareAndSwap(ctx, key, version, value)
				if err != nil {
					return &opError{op: "cas", key: key, err: err}
				}
				return p.printVersion(key, next)
			})
		},
	}
}
