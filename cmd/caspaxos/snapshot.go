package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/snapshot"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
)

const (
	// snapshotTimeout bounds a save or a restore unless --timeout is
	// given: they run over every key.
	snapshotTimeout = 24 * time.Hour
	// defaultRestoreBump is how far above the file's version bound a
	// restore writes: room for the versions the saved cluster gave out
	// after the save (a key written a billion times after it).
	defaultRestoreBump = 1_000_000_000
	// restoreBatchKeys and restoreBatchBytes bound one restore request.
	restoreBatchKeys  = 200
	restoreBatchBytes = 4 << 20
	// restoreAttempts bounds the sends of one batch that failed without a
	// refusal (unknown outcome, overloaded, no quorum, no endpoint): each
	// key's write only raises its version again, so a batch may be sent
	// twice.
	restoreAttempts = 5
	restoreBackoff  = 500 * time.Millisecond
	// progressEvery is how often the progress line is redrawn.
	progressEvery = 200 * time.Millisecond
)

func newSnapshotCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the cluster's keys to a file, restore them, or show a file's header",
		Long: `A snapshot is a backup of every live key of the cluster with its value and
version, read through the listing while the cluster serves: each key is
saved as it was at some instant of the save; the whole is not a snapshot
across keys. Keys you may not read are left out (save as an admin), and
so is the cluster's own state (users, roles): it is not restored.

The file has a header (format version, time, the cluster's members, the
number of keys and the version bound: the highest version saved), a
checksum on every record and one over the whole file. A truncated or
altered file is refused before anything is restored.

A restore writes every key at a version above the file's bound plus
--bump, so that no compare-and-swap a client prepared against the saved
cluster, before or after the save, can succeed against restored data.`,
		Example: `  caspaxos --user root snapshot save backup.snap
  caspaxos snapshot status backup.snap
  caspaxos --endpoints 10.0.1.1:7070 --user root snapshot restore backup.snap`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSnapshotSaveCmd(o), newSnapshotRestoreCmd(o), newSnapshotStatusCmd(o))
	return cmd
}

// withHTTP is callWithin with the nodes' HTTP API as well, logged in as
// the same user (a password asked for once).
func (o *clientOptions) withHTTP(cmd *cobra.Command, timeout time.Duration, fn func(context.Context, *client.Client, *nodeHTTP, printer) error) error {
	user, password, err := o.credentials(cmd)
	if err != nil {
		return err
	}
	if user != "" {
		o.user = user + ":" + password // asked for once: callWithin finds it
	}
	eps, err := o.endpointList(cmd.CommandPath())
	if err != nil {
		return err
	}
	n, err := o.nodeHTTP(user, password, eps)
	if err != nil {
		return err
	}
	defer n.close()
	return o.callWithin(cmd, timeout, func(ctx context.Context, c *client.Client, p printer) error {
		return fn(ctx, c, n, p)
	})
}

// snapshotDeadline is --timeout if given, else snapshotTimeout.
func (o *clientOptions) snapshotDeadline(cmd *cobra.Command) time.Duration {
	if cmd.Flags().Changed("timeout") {
		return o.timeout
	}
	return snapshotTimeout
}

// progress draws one line on a terminal, at most every progressEvery;
// nothing when w is no terminal.
type progress struct {
	w    io.Writer
	on   bool
	last time.Time
	what string
}

func newProgress(w io.Writer, what string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, on: ok && term.IsTerminal(int(f.Fd())), what: what}
}

func (p *progress) show(keys, total uint64, bytes int64, final bool) {
	if !p.on || (!final && time.Since(p.last) < progressEvery) {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("\r%s %d keys, %.1f MiB", p.what, keys, float64(bytes)/(1<<20))
	if total > 0 {
		line = fmt.Sprintf("\r%s %d/%d keys (%d%%), %.1f MiB", p.what, keys, total, keys*100/total, float64(bytes)/(1<<20))
	}
	fmt.Fprint(p.w, line+"\033[K")
	if final {
		fmt.Fprintln(p.w)
	}
}

type snapshotSaveJSON struct {
	File         string `json:"file"`
	Keys         uint64 `json:"keys"`
	VersionBound uint64 `json:"version_bound"`
	Bytes        int64  `json:"bytes"`
}

func newSnapshotSaveCmd(o *clientOptions) *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save every live key with its value and version to FILE",
		Long: `Save every live key with its value and version to FILE, page by page
through the listing (memory stays bounded by a page), while the cluster
serves. FILE is written under a temporary name in its directory, synced,
and renamed into place once complete. A progress line is drawn on stderr
when it is a terminal.`,
		Example: `  caspaxos --user root snapshot save backup.snap
  caspaxos snapshot status backup.snap`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.callWithin(cmd, o.snapshotDeadline(cmd), func(ctx context.Context, c *client.Client, p printer) error {
				out, err := saveSnapshot(ctx, c, args[0], strings.Join(strings.Fields(o.endpoints), ""), pageSize, newProgress(p.errOut, "saved"))
				if err != nil {
					return err
				}
				return p.print(out, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "saved %d keys (version bound %d, %d bytes) to %s\n", out.Keys, out.VersionBound, out.Bytes, out.File)
					return err
				})
			})
		},
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "keys per listing request (0: the node's default, 1000; at most 10000)")
	return cmd
}

func saveSnapshot(ctx context.Context, c *client.Client, path, source string, pageSize int, prog *progress) (snapshotSaveJSON, error) {
	out := snapshotSaveJSON{File: path}
	info := snapshot.Info{Created: time.Now().UTC().Truncate(time.Millisecond), Source: source}
	m, err := c.Membership(ctx)
	if err != nil {
		return out, &opError{op: "snapshot save", err: err}
	}
	info.ConfigVersion = m.ConfigVersion
	for _, mb := range m.Members {
		info.Members = append(info.Members, snapshot.Member{Name: mb.Name, ID: mb.ID, PeerAddr: mb.PeerAddr})
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return out, err
	}
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w, err := snapshot.NewWriter(f, info)
	if err != nil {
		return out, err
	}
	var bytes int64
	for it, err := range c.List(ctx, "", client.ListOptions{PageSize: pageSize}) {
		if err != nil {
			return out, &opError{op: "snapshot save", err: err}
		}
		if it.ValueOmitted {
			// Too large for a listing: read it alone. A key deleted
			// since was not live through the save; it is left out.
			v, err := c.Get(ctx, it.Key)
			if errors.Is(err, client.ErrNotFound) {
				continue
			}
			if err != nil {
				return out, &opError{op: "snapshot save", key: it.Key, err: err}
			}
			it.Value, it.Version = v.Data, v.Version
		}
		if err := w.Add(it.Key, it.Value, it.Version); err != nil {
			return out, err
		}
		bytes += int64(len(it.Key) + len(it.Value))
		prog.show(w.Keys(), 0, bytes, false)
	}
	if err := w.Close(); err != nil {
		return out, err
	}
	prog.show(w.Keys(), 0, bytes, true)
	if err := f.Sync(); err != nil {
		return out, err
	}
	st, err := f.Stat()
	if err != nil {
		return out, err
	}
	if err := f.Close(); err != nil {
		return out, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return out, err
	}
	f = nil
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename, durable where the system allows it
		d.Close()
	}
	out.Keys, out.VersionBound, out.Bytes = w.Keys(), w.VersionBound(), st.Size()
	return out, nil
}

// openSnapshot opens path and reads its header.
func openSnapshot(path string) (*os.File, *snapshot.Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := snapshot.NewReader(f, snapshot.Limits{})
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, r, nil
}

// verifySnapshot reads the whole of path and checks every checksum: the
// header, or the error that makes the file unusable.
func verifySnapshot(path string) (snapshot.Header, error) {
	f, r, err := openSnapshot(path)
	if err != nil {
		return snapshot.Header{}, err
	}
	defer f.Close()
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header(), nil
		}
		if err != nil {
			return r.Header(), fmt.Errorf("%s: %w", path, err)
		}
	}
}

type snapshotRestoreJSON struct {
	File       string `json:"file"`
	Keys       uint64 `json:"keys"`
	MinVersion uint64 `json:"min_version"`
	MaxVersion uint64 `json:"max_version"`
}

func newSnapshotRestoreCmd(o *clientOptions) *cobra.Command {
	var into bool
	var bump uint64
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore the keys of FILE into a fresh cluster (or --into a running one)",
		Long: `Restore every key of FILE. The whole file is read and checked first:
a truncated or altered file is refused and nothing is written.

Every key is written at a version above the file's version bound plus
--bump (or above its current version in the cluster, if that is higher),
so that a compare-and-swap prepared against the saved cluster cannot
succeed against restored data. Without --into the cluster must hold no
keys; with --into the file's keys overwrite those of a running cluster
and its other keys stay. Needs the admin permission when auth is on.`,
		Example: `  caspaxos --user root snapshot restore backup.snap
  caspaxos --user root snapshot restore --into backup.snap`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := verifySnapshot(args[0])
			if err != nil {
				return err
			}
			if h.VersionBound > protocol.MaxVersion-1-bump {
				return usagef(cmd.CommandPath(), "--bump %d: the version bound %d plus it is past the highest version", bump, h.VersionBound)
			}
			floor := h.VersionBound + bump + 1
			return o.withHTTP(cmd, o.snapshotDeadline(cmd), func(ctx context.Context, c *client.Client, n *nodeHTTP, p printer) error {
				if !into {
					items, _, err := c.ListPage(ctx, "", client.ListOptions{PageSize: 1, KeysOnly: true})
					if err != nil {
						return &opError{op: "snapshot restore", err: err}
					}
					if len(items) > 0 {
						return fmt.Errorf("the cluster holds keys (%q, ...): restore into a fresh cluster, or into this one with --into", items[0].Key)
					}
				}
				out, err := restoreSnapshot(ctx, n, args[0], floor, newProgress(p.errOut, "restored"))
				if err != nil {
					return err
				}
				return p.print(out, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "restored %d keys at versions %d to %d\n", out.Keys, out.MinVersion, out.MaxVersion)
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVar(&into, "into", false, "restore into a running cluster that holds keys (the file's keys overwrite theirs)")
	cmd.Flags().Uint64Var(&bump, "bump", defaultRestoreBump, "how far above the file's version bound the restored versions start")
	return cmd
}

func restoreSnapshot(ctx context.Context, n *nodeHTTP, path string, floor uint64, prog *progress) (snapshotRestoreJSON, error) {
	out := snapshotRestoreJSON{File: path}
	f, r, err := openSnapshot(path)
	if err != nil {
		return out, err
	}
	defer f.Close()
	total := r.Header().Keys
	req := clientapi.RestoreRequest{MinVersion: floor}
	var size, bytes int64
	flush := func() error {
		if len(req.Items) == 0 {
			return nil
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		resp, err := sendRestore(ctx, n, body)
		if err != nil {
			return &opError{op: "snapshot restore", key: string(req.Items[0].Key), err: err}
		}
		if len(resp.Versions) != len(req.Items) {
			return fmt.Errorf("snapshot restore: %d versions for %d keys", len(resp.Versions), len(req.Items))
		}
		for i, v := range resp.Versions {
			if v < floor {
				return fmt.Errorf("snapshot restore: key %q written at version %d, below %d", req.Items[i].Key, v, floor)
			}
			if out.Keys == 0 && i == 0 || v < out.MinVersion {
				out.MinVersion = v
			}
			out.MaxVersion = max(out.MaxVersion, v)
		}
		out.Keys += uint64(len(req.Items))
		req.Items, size = req.Items[:0], 0
		prog.show(out.Keys, total, bytes, false)
		return nil
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		req.Items = append(req.Items, clientapi.RestoreItem{Key: []byte(rec.Key), Value: rec.Value})
		size += int64(len(rec.Key) + len(rec.Value))
		bytes += int64(len(rec.Key) + len(rec.Value))
		if len(req.Items) >= restoreBatchKeys || size >= restoreBatchBytes {
			if err := flush(); err != nil {
				return out, err
			}
		}
	}
	if err := flush(); err != nil {
		return out, err
	}
	prog.show(out.Keys, total, bytes, true)
	return out, nil
}

// sendRestore sends one batch, again after a failure that refused
// nothing (restoreAttempts).
func sendRestore(ctx context.Context, n *nodeHTTP, body []byte) (clientapi.RestoreResponse, error) {
	var resp clientapi.RestoreResponse
	var err error
	for attempt := 1; ; attempt++ {
		err = n.callAny(ctx, "POST", "/v1/restore", body, &resp)
		retry := errors.Is(err, client.ErrUnknownOutcome) || errors.Is(err, client.ErrOverloaded) ||
			errors.Is(err, client.ErrNoQuorum) || errors.Is(err, client.ErrUnavailable)
		if err == nil || !retry || attempt == restoreAttempts {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(restoreBackoff * time.Duration(attempt)):
		}
	}
}

type snapshotStatusJSON struct {
	File          string            `json:"file"`
	Format        uint16            `json:"format"`
	Created       time.Time         `json:"created"`
	Source        string            `json:"source,omitempty"`
	Keys          uint64            `json:"keys"`
	VersionBound  uint64            `json:"version_bound"`
	ConfigVersion uint64            `json:"config_version"`
	Members       []snapshot.Member `json:"members"`
	Bytes         int64             `json:"bytes"`
	Verified      bool              `json:"verified"`
}

func newSnapshotStatusCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Print the header of a snapshot file after checking the whole file",
		Long: `Print the header of FILE (format version, time, source, members, number of
keys, version bound) after reading the whole file and checking every
checksum. A truncated or altered file is an error (exit code 1).`,
		Example: `  caspaxos snapshot status backup.snap
  caspaxos snapshot status -o json backup.snap | jq .keys`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := printer{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), json: o.output == "json"}
			if o.output != "plain" && o.output != "json" {
				return usagef(cmd.CommandPath(), "--output %q: want plain or json", o.output)
			}
			h, err := verifySnapshot(args[0])
			if err != nil {
				return err
			}
			st, err := os.Stat(args[0])
			if err != nil {
				return err
			}
			out := snapshotStatusJSON{File: args[0], Format: h.Format, Created: h.Info.Created, Source: h.Info.Source, Keys: h.Keys,
				VersionBound: h.VersionBound, ConfigVersion: h.Info.ConfigVersion, Members: h.Info.Members, Bytes: st.Size(), Verified: true}
			return p.print(out, func(w io.Writer) error { return writeSnapshotStatus(w, out) })
		},
	}
}

func writeSnapshotStatus(w io.Writer, s snapshotStatusJSON) error {
	var members []string
	for _, m := range s.Members {
		members = append(members, fmt.Sprintf("%s (id %d, %s)", m.Name, m.ID, m.PeerAddr))
	}
	_, err := fmt.Fprintf(w, "file:            %s\nformat:          %d\ncreated:         %s\nsource:          %s\nkeys:            %d\nversion bound:   %d\nconfig version:  %d\nmembers:         %s\nbytes:           %d\nverified:        every checksum matches\n",
		s.File, s.Format, s.Created.Format(time.RFC3339Nano), s.Source, s.Keys, s.VersionBound, s.ConfigVersion, strings.Join(members, ", "), s.Bytes)
	return err
}
