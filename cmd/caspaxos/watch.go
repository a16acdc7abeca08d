package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

// watchJSON is one line of `watch -o json`: get's shape, with the previous
// version and deleted. Deleted with version 0: the tombstone was collected.
type watchJSON struct {
	valueJSON
	PrevVersion uint64 `json:"prev_version"`
	Deleted     bool   `json:"deleted,omitempty"`
}

func newWatchCmd(o *clientOptions) *cobra.Command {
	var prefixes []string
	cmd := &cobra.Command{
		Use:   "watch [KEY...] [--prefix P]...",
		Short: "Print the changes of keys, or of every key under a prefix, as they come",
		Long: `Print the changes of KEYs, and of every key under each --prefix, as they
come, until interrupted (or --timeout, if given, ends).

A watch first prints each key's current state (a prefix: every live key
under it), then each change. Every state printed was chosen and confirmed
by a linearizable read; a key's versions only rise; the latest state of
every watched key is printed, also when the watch moves to another node
after a failure. Changes are coalesced: a key changed twice before it is
printed may show only its latest state, and a version that jumps (the
previous version is not one below) says states were merged or passed
over. Keys under a prefix that you may not read are left out.

Plain output is one change per line: the key, a tab, the version, a tab,
and the value (or "(deleted)"). With -o json each change is one JSON
object per line: get's shape with "prev_version", and "deleted": true for
a deleted key (version 0 if its tombstone was collected).`,
		Example: `  caspaxos watch config/db
  caspaxos watch --prefix app/ -o json | jq -c .
  caspaxos watch --timeout 30s lock/leader`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(prefixes) == 0 {
				return usagef(cmd.CommandPath(), "name a KEY or a --prefix")
			}
			for _, k := range args {
				if _, err := keyArg(cmd, k); err != nil {
					return err
				}
			}
			timeout := time.Duration(math.MaxInt64) // a watch runs until interrupted
			if cmd.Flags().Changed("timeout") {
				timeout = o.timeout
			}
			return o.callWithin(cmd, timeout, func(ctx context.Context, c *client.Client, p printer) error {
				for ev, err := range c.Watch(ctx, args, client.WatchOptions{Prefixes: prefixes}) {
					if err != nil {
						return &opError{op: "watch", key: fmt.Sprint(append(args, prefixes...)), err: err}
					}
					j := watchJSON{valueJSON: newValueJSON(ev.Key, client.Value{Data: ev.Value, Version: ev.Version}),
						PrevVersion: ev.PrevVersion, Deleted: ev.Deleted}
					if err := p.print(j, func(w io.Writer) error { return writeWatchLine(w, ev) }); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&prefixes, "prefix", nil, "watch every key under this prefix too (repeatable; empty: every key)")
	return cmd
}

func writeWatchLine(w io.Writer, ev client.WatchEvent) error {
	v := printable(string(ev.Value))
	if ev.Deleted {
		v = "(deleted)"
	}
	_, err := fmt.Fprintf(w, "%s\t%d\t%s\n", printable(ev.Key), ev.Version, v)
	return err
}
