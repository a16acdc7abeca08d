package consulapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// kvPair is a key as Consul's API shows it (api.KVPair).
type kvPair struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
}

// pairOf is the Consul view of key's live state st: ModifyIndex is its
// version, CreateIndex the version that began its life (its version when
// unknown: a key written before that was kept), LockIndex, Flags and the
// session (its lease) are its attributes.
func pairOf(key string, st protocol.State) kvPair {
	created := st.Created
	if created == 0 || created > st.Version {
		created = st.Version
	}
	p := kvPair{Key: key, CreateIndex: created, ModifyIndex: st.Version, LockIndex: st.LockIndex, Flags: st.Flags, Value: st.Value}
	if st.Lease != 0 {
		p.Session = sessionID(st.Lease)
	}
	return p
}

// sessionID is the Consul session ID of lease id: a UUID whose last 64
// bits are the lease's ID.
func sessionID(id uint64) string {
	return fmt.Sprintf("00000000-0000-0000-%04x-%012x", id>>48, id&(1<<48-1))
}

// keyOf is the key of a /v1/kv path.
func keyOf(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, kvPath) }

// errMissingKey is Consul's answer to a write without a key.
var errMissingKey = fmt.Errorf("%w: Missing key name", errBadRequest)

// beginKV parses a /v1/kv request's query and begins its call; on an
// error it answers it and returns false.
func (s *Server) beginKV(w http.ResponseWriter, r *http.Request) (kvQuery, *call, bool) {
	q, err := parseKVQuery(r.Method, r.URL.Query())
	if err != nil {
		writeError(w, err)
		return q, nil, false
	}
	c, err := s.begin(r)
	if err != nil {
		writeError(w, err)
		return q, nil, false
	}
	return q, c, true
}

// getKV serves GET /v1/kv/{key}: one key, or with recurse or keys a prefix.
func (s *Server) getKV(w http.ResponseWriter, r *http.Request) {
	q, c, started := s.beginKV(w, r)
	if !started {
		return
	}
	key := keyOf(r)
	if q.keys || q.recurse {
		c.getPrefix(w, key, q)
		return
	}
	c.getKey(w, key, q)
}

// keyIndex is a key's X-Consul-Index: its version (ModifyIndex, as
// Consul answers a key it has), a tombstone's too, and absentIndex for a
// key never written or whose tombstone was collected.
func keyIndex(st protocol.State) uint64 {
	if st.Version == 0 {
		return absentIndex
	}
	return st.Version
}

// absentIndex is an absent key's index: above every version
// (protocol.MaxVersion), so that no state the key takes shares it. A
// blocking query on a key not yet written then wakes when it is created,
// at whatever version (1 in a fresh cluster), rather than sleeping
// through it; the index its answer carries is lower, and Consul's
// clients, seeing an index go backwards, start again from 0 (one more
// round trip). Consul has no such case: its index 1 is never a key's.
const absentIndex = protocol.MaxVersion + 1

// getKey reads one key, settled (lock.go); a blocking query at the key's
// index waits for a change (by the node's watch: no polling), then reads
// again.
func (c *call) getKey(w http.ResponseWriter, key string, q kvQuery) {
	if key == "" {
		writeError(w, errMissingKey)
		return
	}
	read := func() (protocol.State, holding, error) {
		st, err := c.do(kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			return st, holding{}, err
		}
		return c.settle(key, st)
	}
	st, h, err := read()
	if err == nil && q.index != 0 && keyIndex(st) == q.index && c.s.cfg.Watches != nil {
		if err = c.waitKey(w, key, st, h, q.wait); err == nil {
			st, h, err = read()
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, keyIndex(st))
	if !st.Exists() {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if q.raw {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(st.Value)
		return
	}
	writeJSON(w, http.StatusOK, []kvPair{pairOf(key, h.view(st))})
}

// waitKey waits until key's version is above st's (settled, h its
// holder), or wait ends. The key's version does not move when its
// holder's session ends, so it also wakes:
//   - on a held key, when the holder's lease ends (it watches the lease's
//     register): the caller's read shows the key free, as Consul does at
//     once, and settles it when no lock delay is left (a destroy);
//   - on a key whose holder ended within its lock delay, when the delay
//     ends, and the caller's read settles it. Nothing of that lease
//     changes any more, so it does not watch it: a query at the index of
//     a key shown free sleeps till then, rather than answering the same
//     again at once.
func (c *call) waitKey(w http.ResponseWriter, key string, st protocol.State, h holding, wait time.Duration) error {
	req := kv.WatchRequest{Keys: []string{key}, From: map[string]uint64{key: st.Version}}
	if err := req.Validate(c.s.cfg.Limits); err != nil {
		return err
	}
	switch {
	case h.ended && !h.delayEnd.IsZero():
		wait = min(wait, h.delayEnd.Sub(c.s.cfg.Now()))
	case !h.ended && st.Exists() && st.Lease != 0:
		holder := kv.LeaseKey(st.Lease) // reserved: past Validate, watched as any register
		req.Keys = append(req.Keys, holder)
		req.From[holder] = h.leaseVersion
	}
	return c.block(w, req, wait, nil, func(evs []kv.WatchEvent) (bool, error) {
		for _, ev := range evs {
			if ev.Key == key {
				return true, nil
			}
			// The holder's lease changed: a renewal, or its end.
			l, err := kv.LeaseOf(protocol.State{Value: ev.Value, Version: ev.Version, Deleted: ev.Deleted})
			if err != nil || l.State != kv.LeaseLive {
				return true, nil
			}
		}
		return false, nil
	})
}

// block runs a watch of req until opened (run once the watch is open;
// nil: none) or changed (run on each event batch) says there was a
// change, or wait ends (no error: the caller answers with what it reads
// then). It holds no admission slot while it waits.
func (c *call) block(w http.ResponseWriter, req kv.WatchRequest, wait time.Duration, opened func() (bool, error), changed func([]kv.WatchEvent) (bool, error)) error {
	// The answer is written after the wait: move the server's write
	// deadline past it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 2*c.s.cfg.RequestTimeout))
	ctx, cancel := context.WithTimeout(c.ctx, wait)
	defer cancel()
	wa, err := c.s.cfg.Watches.Watch(ctx, req)
	if err != nil {
		if ctx.Err() != nil && c.ctx.Err() == nil {
			return nil
		}
		return err
	}
	defer wa.Close()
	if opened != nil {
		if done, err := opened(); done || err != nil {
			return err
		}
	}
	for {
		evs, err := wa.Next(ctx)
		switch {
		case err != nil && ctx.Err() != nil && c.ctx.Err() == nil:
			return nil // the wait ended
		case err != nil:
			return err
		}
		if len(evs) == 0 {
			continue
		}
		if done, err := changed(evs); done || err != nil {
			return err
		}
	}
}

// listing is a prefix's live keys, each with its state, and its index.
type listing struct {
	items []kv.ListItem
	index uint64
}

// list lists every live key under prefix (all of them, whatever the
// caller may read: the index covers the whole prefix; the answer shows
// only what the caller may read) and gives the prefix its index.
func (c *call) list(prefix string) (listing, error) {
	if err := kv.CheckClientKey(prefix); err != nil {
		return listing{}, err
	}
	var out listing
	req := kv.ListRequest{Prefix: prefix, Limit: kv.MaxListLimit}
	for {
		if err := req.Validate(c.s.cfg.Limits); err != nil {
			return listing{}, err
		}
		var more bool
		err := c.admitted(func(ctx context.Context) error {
			var err error
			more, err = c.s.b.List(ctx, req, func(string) (bool, error) { return true, nil }, func(it kv.ListItem) error {
				if it.ValueOmitted {
					// Too large for a listing: read it by itself.
					st, err := c.s.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: it.Key})
					if err != nil || !st.Exists() {
						return err
					}
					it = kv.ListItem{Key: it.Key, Value: st.Value, Version: st.Version, Created: st.Created, Attrs: st.Attrs}
				}
				out.items = append(out.items, it)
				req.After = it.Key
				return nil
			})
			return err
		})
		if err != nil {
			return listing{}, err
		}
		if !more {
			break
		}
	}
	out.index = prefixIndex(out.items)
	return out, nil
}

// getPrefix lists a prefix (recurse: the keys with their values; keys:
// the keys, folded at separator); a blocking query at the prefix's index
// waits for a change under it.
func (c *call) getPrefix(w http.ResponseWriter, prefix string, q kvQuery) {
	if err := c.allowed(auth.Access{Perm: auth.PermRead, Key: prefix}); err != nil && !errors.Is(err, kv.ErrPermissionDenied) {
		writeError(w, err) // unauthenticated: a denied prefix still lists what the caller may read
		return
	}
	l, err := c.list(prefix)
	if err == nil && q.index != 0 && l.index == q.index && c.s.cfg.Watches != nil {
		l, err = c.waitPrefix(w, prefix, q, l)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	var pairs []kvPair
	var keys []string
	for _, it := range l.items {
		ok, err := c.readable(it.Key)
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			continue
		}
		st := protocol.State{Value: it.Value, Version: it.Version, Created: it.Created, Attrs: it.Attrs}
		if st.Lease != 0 {
			var h holding
			if st, h, err = c.settle(it.Key, st); err != nil {
				writeError(w, err)
				return
			}
			if !st.Exists() {
				continue // its session ended with Behavior delete
			}
			st = h.view(st)
		}
		if q.keys {
			keys = appendFolded(keys, prefix, it.Key, q.separator)
			continue
		}
		pairs = append(pairs, pairOf(it.Key, st))
	}
	setIndex(w, l.index)
	switch {
	case q.keys && len(keys) > 0:
		writeJSON(w, http.StatusOK, keys)
	case !q.keys && len(pairs) > 0:
		writeJSON(w, http.StatusOK, pairs)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// appendFolded appends key to keys as Consul's ?keys&separator= lists it:
// cut after the first separator past the prefix, each folded key once
// (keys come in order, so a repeat is the last one).
func appendFolded(keys []string, prefix, key, sep string) []string {
	if sep != "" {
		if i := strings.Index(key[len(prefix):], sep); i >= 0 {
			key = key[:len(prefix)+i+len(sep)]
		}
	}
	if n := len(keys); n > 0 && keys[n-1] == key {
		return keys
	}
	return append(keys, key)
}

// waitPrefix waits until the prefix's index is no longer q.index, or the
// wait ends, and returns the listing then. The watch opens before a
// second listing, so that no change falls between the first listing and
// the watch; an event counts when it shows a key at another version than
// the last listing holds (a prefix watch starts with the current state of
// every key: those that match are skipped), and then the prefix is
// listed again.
func (c *call) waitPrefix(w http.ResponseWriter, prefix string, q kvQuery, l listing) (listing, error) {
	versions := func(l listing) map[string]uint64 {
		m := make(map[string]uint64, len(l.items))
		for _, it := range l.items {
			m[it.Key] = it.Version
		}
		return m
	}
	have := versions(l)
	relist := func() (bool, error) {
		var err error
		if l, err = c.list(prefix); err != nil {
			return true, err
		}
		have = versions(l)
		return l.index != q.index, nil
	}
	req := kv.WatchRequest{Prefixes: []string{prefix}}
	if err := req.Validate(c.s.cfg.Limits); err != nil {
		return l, err
	}
	err := c.block(w, req, q.wait, relist, func(evs []kv.WatchEvent) (bool, error) {
		for _, ev := range evs {
			if v, ok := have[ev.Key]; (ev.Deleted && ok) || (!ev.Deleted && v != ev.Version) {
				return relist()
			}
		}
		return false, nil
	})
	if err != nil {
		return l, err
	}
	if l.index != q.index {
		return l, nil // listed after the change
	}
	// The wait ended: answer with a listing newer than every event seen.
	return c.list(prefix)
}

// readBody reads a write's value, at most the limit.
func (c *call) readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(c.s.cfg.Limits.MaxValueBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the value: %v", errBadRequest, err)
	}
	if err := c.s.cfg.Limits.CheckValue(b); err != nil {
		return nil, err
	}
	return b, nil
}

// putKV serves PUT /v1/kv/{key}: a set, with ?cas a check-and-set, with
// ?acquire or ?release a lock change (sessions.go). It answers true or
// false, as Consul does.
func (s *Server) putKV(w http.ResponseWriter, r *http.Request) {
	q, c, started := s.beginKV(w, r)
	if !started {
		return
	}
	key := keyOf(r)
	if key == "" {
		writeError(w, errMissingKey)
		return
	}
	value, err := c.readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ok, err := c.put(key, value, q)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ok)
}

// put runs one PUT: whether it applied.
func (c *call) put(key string, value []byte, q kvQuery) (bool, error) {
	switch {
	case q.acquire != "" || q.release != "":
		return c.lockChange(key, value, q)
	case q.hasCAS:
		_, err := c.do(kv.Op{Kind: kv.OpCompareAndSwapFlags, Key: key, Version: q.cas, Value: value, Flags: q.flags})
		if errors.Is(err, kv.ErrVersionMismatch) {
			return false, nil
		}
		return err == nil, err
	}
	_, err := c.do(kv.Op{Kind: kv.OpPutFlags, Key: key, Value: value, Flags: q.flags})
	return err == nil, err
}

// deleteKV serves DELETE /v1/kv/{key}: one key (with ?cas, only at that
// index), or with ?recurse every key under the prefix, one by one.
func (s *Server) deleteKV(w http.ResponseWriter, r *http.Request) {
	q, c, started := s.beginKV(w, r)
	if !started {
		return
	}
	key := keyOf(r)
	var ok bool
	var err error
	switch {
	case q.recurse:
		ok, err = true, c.deleteTree(key)
	case key == "":
		err = errMissingKey
	default:
		ok, err = c.deleteOne(key, q)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ok)
}

// deleteOne deletes key: true if it is gone (deleting an absent key is
// true, as in Consul); with cas, false unless the key is at that index
// (cas=0: only an absent key, which is left absent).
func (c *call) deleteOne(key string, q kvQuery) (bool, error) {
	if q.hasCAS && q.cas == 0 {
		st, err := c.do(kv.Op{Kind: kv.OpGet, Key: key})
		return !st.Exists(), err
	}
	_, err := c.do(kv.Op{Kind: kv.OpDelete, Key: key, Version: q.cas})
	var vm *kv.VersionMismatchError
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return true, nil
	case errors.As(err, &vm):
		return vm.Current == 0, nil // absent: gone already
	}
	return err == nil, err
}

// deleteTree lists the prefix, checks that the caller may delete every key
// listed, then deletes them one by one, each only while it still has the
// version listed (a key changed since is left alone). Not atomic: another
// client may see some keys deleted and others not yet.
func (c *call) deleteTree(prefix string) error {
	l, err := c.list(prefix)
	if err != nil {
		return err
	}
	for _, it := range l.items {
		if err := c.allowed(auth.Access{Perm: auth.PermWrite, Key: it.Key}); err != nil {
			return err
		}
	}
	for i, it := range l.items {
		_, err := c.do(kv.Op{Kind: kv.OpDelete, Key: it.Key, Version: it.Version})
		switch {
		case errors.Is(err, kv.ErrVersionMismatch), errors.Is(err, kv.ErrNotFound):
		case err != nil:
			return fmt.Errorf("%w (%d keys of the tree were handled before it; deleting a tree is not atomic)", err, i)
		}
	}
	return nil
}
