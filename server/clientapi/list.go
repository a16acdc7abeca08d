package clientapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Listing (COORDINATION.md, Listing; server/list). A listing shows only the
// keys the caller may read: every key is checked against the read
// permission and skipped, uncounted, if the caller lacks it, so that a
// user with read on a/ lists only a/ keys. Reserved keys are never listed.

// listPage checks req, authenticates c and runs one page, calling emit for
// each key the caller may read.
func listPage(ctx context.Context, g *auth.Guard, l kv.Limits, b Backend, c auth.Credentials, req kv.ListRequest, emit func(kv.ListItem) error) (bool, error) {
	if err := req.Validate(l); err != nil {
		if errors.Is(err, kv.ErrBadListRequest) {
			err = fmt.Errorf("%w: %w", errBadRequest, err)
		}
		return false, err
	}
	p, err := authenticate(ctx, g, c)
	if err != nil {
		return false, err
	}
	allow := func(key string) (bool, error) {
		err := authorize(ctx, g, p, auth.Access{Perm: auth.PermRead, Key: key})
		if errors.Is(err, kv.ErrPermissionDenied) {
			return false, nil
		}
		return err == nil, err
	}
	return b.List(ctx, req, allow, emit)
}

// listQuery reads GET /v1/kv/{prefix}?list's parameters.
func listQuery(r *http.Request) (kv.ListRequest, error) {
	req := kv.ListRequest{Prefix: r.PathValue("key")}
	if err := onlyQuery(r, "list", "limit", "after", "keys"); err != nil {
		return req, err
	}
	q := r.URL.Query()
	req.After = q.Get("after")
	_, req.KeysOnly = q["keys"]
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return req, fmt.Errorf("%w: limit=%q is not a number from 1 to %d", errBadRequest, s, kv.MaxListLimit)
		}
		req.Limit = n
	}
	return req, nil
}

// listItemJSON is one item of an HTTP listing. A key that is not UTF-8
// travels in key_b64 instead of key.
type listItemJSON struct {
	Key          string `json:"key,omitempty"`
	KeyBase64    []byte `json:"key_b64,omitempty"`
	Value        []byte `json:"value,omitempty"`
	Version      uint64 `json:"version"`
	ValueOmitted bool   `json:"value_omitted,omitempty"`
}

// list serves GET /v1/kv/{prefix}?list. The answer streams: the opening
// of {"items":[ goes out with the first item, each item as it is decided,
// and the close with "more". An error before the first item is an ordinary
// error answer; one after it closes the object with "error" in place of
// "more", which a client must treat as a failed page (the items before it
// remain true).
func (h *httpAPI) list(w http.ResponseWriter, r *http.Request) {
	req, err := listQuery(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	bw := bufio.NewWriterSize(w, 32<<10)
	started := false
	enc := json.NewEncoder(bw)
	emit := func(it kv.ListItem) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = bw.WriteString(`{"items":[`)
		} else {
			_ = bw.WriteByte(',')
		}
		j := listItemJSON{Key: it.Key, Value: it.Value, Version: it.Version, ValueOmitted: it.ValueOmitted}
		if !utf8.ValidString(it.Key) {
			j.Key, j.KeyBase64 = "", []byte(it.Key)
		}
		return enc.Encode(j) // its newline is JSON whitespace
	}
	more, err := listPage(ctx, h.cfg.Guard, h.cfg.Limits, h.b, HTTPCredentials(r), req, emit)
	if err != nil && !started {
		writeError(w, err, 0)
		return
	}
	if !started {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = bw.WriteString(`{"items":[`)
	}
	if err != nil {
		c, _ := classify(err)
		tail, _ := json.Marshal(map[string]string{"code": c.code, "message": err.Error()})
		_, _ = fmt.Fprintf(bw, `],"error":%s}`+"\n", tail)
	} else {
		_, _ = fmt.Fprintf(bw, `],"more":%v}`+"\n", more)
	}
	_ = bw.Flush()
}

// listMessageBytes is about the most bytes of keys and values one gRPC
// ListResponse carries (gRPC's messages are limited to 4 MiB).
const listMessageBytes = 1 << 20

// List serves KV.List: the page's items in messages of about
// listMessageBytes, the last one with end and more.
func (g *grpcAPI) List(r *caspaxospb.ListRequest, s caspaxospb.KV_ListServer) error {
	ctx, cancel := context.WithTimeout(s.Context(), g.timeout(0))
	defer cancel()
	if err := g.cfg.Admission.admit(); err != nil {
		return statusOf(err)
	}
	defer g.cfg.Admission.release()
	req := kv.ListRequest{Prefix: string(r.GetPrefix()), After: string(r.GetAfter()), Limit: int(min(r.GetLimit(), kv.MaxListLimit+1)), KeysOnly: r.GetKeysOnly()}
	out := &caspaxospb.ListResponse{}
	size := 0
	emit := func(it kv.ListItem) error {
		out.Items = append(out.Items, &caspaxospb.ListItem{Key: []byte(it.Key), Value: it.Value, Version: it.Version, ValueOmitted: it.ValueOmitted})
		if size += len(it.Key) + len(it.Value); size < listMessageBytes {
			return nil
		}
		err := s.Send(out)
		out, size = &caspaxospb.ListResponse{}, 0
		return err
	}
	more, err := listPage(ctx, g.cfg.Guard, g.cfg.Limits, g.b, GRPCCredentials(s.Context()), req, emit)
	if err != nil {
		return statusOf(err)
	}
	out.End, out.More = true, more
	return s.Send(out)
}
