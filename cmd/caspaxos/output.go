package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/caspaxos/caspaxos/client"
)

// JSON output (-o json): each command prints exactly one object and a
// newline on stdout. Values are binary-safe: a value that is valid UTF-8 is
// a JSON string as is; any other value is base64 (standard, padded) and the
// object says "encoding":"base64". The field is absent otherwise.

// valueJSON is get's output.
type valueJSON struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
	Version  uint64 `json:"version"`
}

func newValueJSON(key string, v client.Value) valueJSON {
	out := valueJSON{Key: key, Value: string(v.Data), Version: v.Version}
	if !utf8.Valid(v.Data) {
		out.Value, out.Encoding = base64.StdEncoding.EncodeToString(v.Data), "base64"
	}
	return out
}

// versionJSON is the output of put, create, cas and del: the key's version
// after the write (for del, the tombstone's).
type versionJSON struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
}

// incrJSON is incr's output; value is a JSON number.
type incrJSON struct {
	Key     string `json:"key"`
	Value   int64  `json:"value"`
	Version uint64 `json:"version"`
}

type healthJSON struct {
	Healthy bool   `json:"healthy"`
	Message string `json:"message,omitempty"`
}

// print writes v as JSON, or runs plain.
func (p printer) print(v any, plain func(io.Writer) error) error {
	if p.json {
		enc := json.NewEncoder(p.out)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return plain(p.out)
}

// printVersion is the output of the writes: the new version.
func (p printer) printVersion(key string, version uint64) error {
	return p.print(versionJSON{Key: key, Version: version}, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, version)
		return err
	})
}

// writeMembers prints members as a table.
func writeMembers(w io.Writer, members []client.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tPEER ADDRESS\tCLIENT ADDRESS\tREACHABLE")
	for _, m := range members {
		clientAddr, reachable := m.ClientAddr, "no"
		if clientAddr == "" {
			clientAddr = "-"
		}
		if m.Reachable {
			reachable = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m.Name, m.ID, m.PeerAddr, clientAddr, reachable)
	}
	return tw.Flush()
}
