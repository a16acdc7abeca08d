package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

func newGetCmd(o *clientOptions) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Long: `Print a key's value (a linearizable read).

Plain output is exactly the value's bytes, with no newline added, so that
$(caspaxos get KEY) and "caspaxos get KEY > file" give back what was stored.
With -v the version is printed to stderr as "version N". With -o json the
output is {"key":...,"value":...,"version":N}; a value that is not valid
UTF-8 is base64 and the object carries "encoding":"base64".

A key that is absent or deleted exits with code 3.`,
		Example: `  caspaxos get greeting
  greeting=$(caspaxos get greeting)
  caspaxos get -v greeting            # version on stderr
  caspaxos get -o json greeting       # {"key":"greeting","value":"hello","version":1}
  caspaxos get photo > photo.jpg`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := keyArg(cmd, args[0])
			if err != nil {
				return err
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				v, err := c.Get(ctx, key)
				if err != nil {
					return &opError{op: "get", key: key, err: err}
				}
				if verbose {
					fmt.Fprintf(p.errOut, "version %d\n", v.Version)
				}
				return p.print(newValueJSON(key, v), func(w io.Writer) error {
					_, err := w.Write(v.Data)
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the version to stderr")
	return cmd
}
