package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Watching over HTTP (COORDINATION.md, Watch; docs/api.md, Watch):
//
//	GET /v1/kv/{key}?wait=30s&version=N   a long poll: answers as a GET does as
//	                                      soon as the key's version is above N,
//	                                      or at the wait's end with its state
//	GET /v1/watch/{prefix}                text/event-stream: the state of every
//	                                      live key under prefix, then changes
//
// Neither holds an admission slot while it waits: a wait is no operation
// in flight. A watch needs read permission on its key; a prefix stream
// shows only the keys the caller may read, as a listing does.

// errNoWatches: the node was built without watches.
var errNoWatches = fmt.Errorf("%w: this node serves no watches", errBadRequest)

// watchEventJSON is one event of a prefix stream (and the gRPC event's
// shape in JSON). A key that is not UTF-8 travels in key_b64. Deleted with
// no version: the key's tombstone was collected.
type watchEventJSON struct {
	Key         string `json:"key,omitempty"`
	KeyBase64   []byte `json:"key_b64,omitempty"`
	Version     uint64 `json:"version,omitempty"`
	PrevVersion uint64 `json:"prev_version"`
	Value       []byte `json:"value,omitempty"`
	Deleted     bool   `json:"deleted,omitempty"`
}

func eventJSON(ev kv.WatchEvent) watchEventJSON {
	j := watchEventJSON{Key: ev.Key, Version: ev.Version, PrevVersion: ev.PrevVersion, Value: ev.Value, Deleted: ev.Deleted}
	if !utf8.ValidString(ev.Key) {
		j.Key, j.KeyBase64 = "", []byte(ev.Key)
	}
	return j
}

// getRoute serves GET /v1/kv/{key}: a long poll with ?wait, otherwise
// the admitted read or listing.
func (h *httpAPI) getRoute(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("wait") {
		h.longPoll(w, r)
		return
	}
	h.admit(h.get)(w, r)
}

// longPollQuery reads ?wait=DURATION&version=N.
func longPollQuery(r *http.Request) (time.Duration, uint64, error) {
	if err := onlyQuery(r, "wait", "version"); err != nil {
		return 0, 0, err
	}
	q := r.URL.Query()
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, 0, fmt.Errorf("%w: wait=%q is not a duration like 30s", errBadRequest, s)
		}
		wait = d
	}
	var version uint64
	if s := q.Get("version"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: version=%q is not a version", errBadRequest, s)
		}
		version = n
	}
	return kv.WatchWait(wait), version, nil
}

// longPoll answers as soon as the key's version is above the asked one,
// or at the wait's end with the key's current state (a linearizable read),
// like Consul's blocking queries: an answer is no promise of a change.
func (h *httpAPI) longPoll(w http.ResponseWriter, r *http.Request) {
	if err := checkOrigin(r, false); err != nil {
		writeError(w, err, 0)
		return
	}
	wait, version, err := longPollQuery(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	key := r.PathValue("key")
	req := kv.WatchRequest{Keys: []string{key}, From: map[string]uint64{key: version}}
	if err := h.authorizeWatch(r.Context(), HTTPCredentials(r), req); err != nil {
		writeError(w, err, 0)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + h.cfg.RequestTimeout))
	ev, found, err := h.waitChange(r.Context(), req, wait)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if !found { // the wait ended: the current state
		s, err := h.run(r, kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			writeError(w, err, 0)
			return
		}
		ev = kv.WatchEvent{Key: key, Value: s.Value, Version: s.Version, Deleted: !s.Exists()}
	}
	if ev.Version > 0 {
		w.Header().Set("ETag", etag(ev.Version))
	}
	if ev.Deleted {
		writeError(w, kv.ErrNotFound, 0)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(ev.Value)))
	_, _ = w.Write(ev.Value)
}

// waitChange watches req's key until an event above its version, or the
// wait's end (found false).
func (h *httpAPI) waitChange(ctx context.Context, req kv.WatchRequest, wait time.Duration) (kv.WatchEvent, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	wa, err := h.cfg.Watches.Watch(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return kv.WatchEvent{}, false, nil
		}
		return kv.WatchEvent{}, false, err
	}
	defer wa.Close()
	for {
		evs, err := wa.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return kv.WatchEvent{}, false, nil
			}
			return kv.WatchEvent{}, false, err
		}
		if len(evs) > 0 {
			return evs[len(evs)-1], true, nil
		}
	}
}

// authorizeWatch checks req and that the caller may read each of its keys
// and prefixes (a prefix: read on the prefix itself, as a key, is not
// asked; its stream skips the keys the caller may not read).
func (h *httpAPI) authorizeWatch(ctx context.Context, c auth.Credentials, req kv.WatchRequest) error {
	if h.cfg.Watches == nil {
		return errNoWatches
	}
	return checkWatch(ctx, h.cfg.Guard, h.cfg.Limits, c, req)
}

// checkWatch validates req and authorizes its keys: the check both
// protocols share.
func checkWatch(ctx context.Context, g *auth.Guard, l kv.Limits, c auth.Credentials, req kv.WatchRequest) error {
	if err := req.Validate(l); err != nil {
		if errors.Is(err, kv.ErrBadWatchRequest) {
			err = fmt.Errorf("%w: %w", errBadRequest, err)
		}
		return err
	}
	p, err := authenticate(ctx, g, c)
	if err != nil {
		return err
	}
	for _, k := range req.Keys {
		if err := authorize(ctx, g, p, auth.Access{Perm: auth.PermRead, Key: k}); err != nil {
			return err
		}
	}
	return nil
}

// readFilter returns whether the caller may read a key (a prefix stream's
// filter); denied keys are skipped, other errors end the stream.
func readFilter(ctx context.Context, g *auth.Guard, c auth.Credentials) (func(string) (bool, error), error) {
	p, err := authenticate(ctx, g, c)
	if err != nil {
		return nil, err
	}
	return func(key string) (bool, error) {
		err := authorize(ctx, g, p, auth.Access{Perm: auth.PermRead, Key: key})
		if errors.Is(err, kv.ErrPermissionDenied) {
			return false, nil
		}
		return err == nil, err
	}, nil
}

// watchStream serves GET /v1/watch/{prefix}: text/event-stream, each
// event one line of JSON after "data: ". It starts with the current state
// of every live key under the prefix (resume by relisting), then each
// change, coalesced per key. An error after the start is sent as an
// "event: error" with the error's JSON, and ends the stream.
func (h *httpAPI) watchStream(w http.ResponseWriter, r *http.Request) {
	if err := checkOrigin(r, false); err != nil {
		writeError(w, err, 0)
		return
	}
	if err := onlyQuery(r); err != nil {
		writeError(w, err, 0)
		return
	}
	c := HTTPCredentials(r)
	req := kv.WatchRequest{Prefixes: []string{r.PathValue("prefix")}}
	if err := h.authorizeWatch(r.Context(), c, req); err != nil {
		writeError(w, err, 0)
		return
	}
	allow, err := readFilter(r.Context(), h.cfg.Guard, c)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	wa, err := h.cfg.Watches.Watch(r.Context(), req)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	defer wa.Close()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream has no end to bound
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	for {
		evs, err := wa.Next(r.Context())
		if err == nil {
			err = h.sendEvents(w, evs, allow)
		}
		if err != nil {
			if r.Context().Err() == nil {
				cl, _ := classify(err)
				tail, _ := json.Marshal(map[string]string{"code": cl.code, "message": err.Error()})
				_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", tail)
				_ = rc.Flush()
			}
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (h *httpAPI) sendEvents(w http.ResponseWriter, evs []kv.WatchEvent, allow func(string) (bool, error)) error {
	for _, ev := range evs {
		ok, err := allow(ev.Key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		b, _ := json.Marshal(eventJSON(ev))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
	}
	return nil
}
