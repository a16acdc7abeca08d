package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

// lsJSON is one line of `ls -o json`.
type lsJSON struct {
	valueJSON
	ValueOmitted bool `json:"value_omitted,omitempty"`
}

func newLsCmd(o *clientOptions) *cobra.Command {
	var keysOnly bool
	var pageSize int
	cmd := &cobra.Command{
		Use:   "ls [--keys] [PREFIX]",
		Short: "List the live keys that begin with a prefix",
		Long: `List the live keys that begin with PREFIX (all keys without one), in byte
order, page by page.

Every key printed had that value and version at some instant during the
call that fetched its page; every key that stayed live through the call is
printed; no deleted key is printed. The listing is not a snapshot across
keys. Keys you may not read are left out.

Plain output is one key per line, followed by a tab and the value (quoted
if it is not printable UTF-8 on one line); with --keys, the key alone. A
value larger than the node returns in a listing prints as "(omitted)": read
it with get. With -o json each key is one JSON object per line (the shape
of get's, with "value_omitted" where it applies).`,
		Example: `  caspaxos ls app/
  caspaxos ls --keys                 # every key
  caspaxos ls -o json app/ | jq -r .value`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				for it, err := range c.List(ctx, prefix, client.ListOptions{KeysOnly: keysOnly, PageSize: pageSize}) {
					if err != nil {
						return &opError{op: "ls", key: prefix, err: err}
					}
					j := lsJSON{valueJSON: newValueJSON(it.Key, client.Value{Data: it.Value, Version: it.Version}), ValueOmitted: it.ValueOmitted}
					if err := p.print(j, func(w io.Writer) error { return writeLsLine(w, it, keysOnly) }); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&keysOnly, "keys", false, "keys only, no values")
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "keys per request (0: the node's default, 1000; at most 10000)")
	return cmd
}

func writeLsLine(w io.Writer, it client.ListItem, keysOnly bool) error {
	if keysOnly {
		_, err := fmt.Fprintln(w, printable(it.Key))
		return err
	}
	v := printable(string(it.Value))
	if it.ValueOmitted {
		v = "(omitted)"
	}
	_, err := fmt.Fprintf(w, "%s\t%s\n", printable(it.Key), v)
	return err
}

// printable is s itself if it is UTF-8 on one line without tabs, else
// quoted.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsAny(s, "\t\n\r") && !strings.HasPrefix(s, `"`) {
		return s
	}
	return strconv.Quote(s)
}
