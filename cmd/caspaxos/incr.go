package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newIncrCmd(o *clientOptions) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "incr KEY [DELTA]",
		Short: "Add to a key's integer value; print the result",
		Long: `Add DELTA (default 1, may be negative) to the decimal int64 stored under KEY
and print the result; an absent key counts as 0. With -v the new version is
printed to stderr as "version N".

A value that is not a decimal integer, or a result outside the int64 range,
changes nothing and exits with code 8. A negative DELTA needs "--" before
the arguments.`,
		Example: `  caspaxos incr visits
  caspaxos incr visits 10
  caspaxos incr -- stock -3
  caspaxos incr -o json visits        # {"key":"visits","value":12,"version":12}`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := keyArg(cmd, args[0])
			if err != nil {
				return err
			}
			delta := int64(1)
			if len(args) == 2 {
				if delta, err = strconv.ParseInt(args[1], 10, 64); err != nil {
					return usagef(cmd.CommandPath(), "DELTA %q is not an integer", args[1])
				}
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				n, version, err := c.Increment(ctx, key, delta)
				if err != nil {
					return &opError{op: "incr", key: key, err: err}
				}
				if verbose {
					fmt.Fprintf(p.errOut, "version %d\n", version)
				}
				return p.print(incrJSON{Key: key, Value: n, Version: version}, func(w io.Writer) error {
					_, err := fmt.Fprintln(w, n)
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the new version to stderr")
	return cmd
}
