package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newPutCmd(o *clientOptions) *cobra.Command {
	var ifVersion uint64
	var lease string
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Store a value; print the new version",
		Long: `Store VALUE under KEY and print the key's new version.

VALUE "-" reads the value from stdin (all of it, bytes as they are). To store
a value that starts with "-", put "--" before the arguments.

With --if-version N the write is a compare-and-swap: it happens only while
the key's version is N (0: only while the key is absent), and otherwise
exits with code 4 and changes nothing.

With --lease ID (hexadecimal, as "caspaxos lease grant" prints it) the key
is attached to that live lease and deleted once the lease expires or is
revoked; a put without it detaches the key from any lease.`,
		Example: `  caspaxos put greeting hello
  caspaxos put config - < config.json
  echo -n hello | caspaxos put greeting -
  caspaxos put --if-version 3 greeting "hello again"   # compare-and-swap
  caspaxos put --lease 3f2a9c0e1b7d4a55 worker/1 up    # deleted when the lease ends
  caspaxos put -- temperature -5
  caspaxos put -o json greeting hello                  # {"key":"greeting","version":4}`,
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
			conditional := cmd.Flags().Changed("if-version")
			var opts []client.WriteOption
			if cmd.Flags().Changed("lease") {
				id, err := leaseIDArg(cmd, lease)
				if err != nil {
					return err
				}
				opts = append(opts, client.WithLease(id))
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				var version uint64
				var err error
				if conditional {
					version, err = c.CompareAndSwap(ctx, key, ifVersion, value, opts...)
				} else {
					version, err = c.Put(ctx, key, value, opts...)
				}
				if err != nil {
					return &opError{op: "put", key: key, err: err}
				}
				return p.printVersion(key, version)
			})
		},
	}
	cmd.Flags().Uint64Var(&ifVersion, "if-version", 0, "write only while the key has this version (0: only while absent)")
	cmd.Flags().StringVar(&lease, "lease", "", "attach the key to this live lease (hexadecimal ID); it is deleted when the lease ends")
	return cmd
}
