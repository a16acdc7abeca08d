package etcdapi

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
)

// createRevision is the etcd create_revision of st: 0 when absent, else
// the version that began its life (protocol.State.Created). A live key
// written before that was kept has none (known false): it reports its
// version, the latest its life may have begun at.
func createRevision(st protocol.State) (rev uint64, known bool) {
	switch {
	case !st.Exists():
		return 0, true
	case st.Created == 0 || st.Created > st.Version:
		return st.Version, false
	}
	return st.Created, true
}

// etcdVersion is the etcd version of st: 0 when absent, else the changes
// since its life began, 1 on creation (known false: see createRevision;
// it reports 1).
func etcdVersion(st protocol.State) (v uint64, known bool) {
	c, known := createRevision(st)
	if !st.Exists() {
		return 0, true
	}
	return st.Version - c + 1, known
}

// keyRange is an etcd key range: one key (end empty), every key from key
// on (end "\x00"), or [key, end).
type keyRange struct{ key, end []byte }

func (r keyRange) single() bool { return len(r.end) == 0 }

// contains reports whether k is in the range.
func (r keyRange) contains(k string) bool {
	if r.single() {
		return k == string(r.key)
	}
	if bytes.Compare([]byte(k), r.key) < 0 {
		return false
	}
	return r.fromKey() || bytes.Compare([]byte(k), r.end) < 0
}

func (r keyRange) fromKey() bool { return len(r.end) == 1 && r.end[0] == 0 }

// past reports whether k is at or past the range's end.
func (r keyRange) past(k string) bool {
	return !r.fromKey() && bytes.Compare([]byte(k), r.end) >= 0
}

// listStart is the listing a range starts: the longest prefix every key of
// the range shares, and the key after which its first key comes.
func (r keyRange) listStart() (prefix, after string) {
	if !r.fromKey() {
		n := 0
		for n < len(r.key) && n < len(r.end) && r.key[n] == r.end[n] {
			n++
		}
		// [key, end) with end = key's successor prefix: every key in it
		// begins with key[:n] when end is key[:n] followed by one byte more.
		prefix = string(r.key[:n])
		if n < len(r.key) && len(r.end) == n+1 && r.end[n] == r.key[n]+1 {
			prefix = string(r.key[:n+1])
		}
	}
	// Keys after `after` include every key >= r.key; the few between are
	// refused by contains.
	if len(r.key) > 0 {
		last := r.key[len(r.key)-1]
		a := append([]byte(nil), r.key[:len(r.key)-1]...)
		if last > 0 {
			a = append(a, last-1)
		}
		after = string(a)
	}
	return prefix, after
}

// errPastEnd stops a listing at its range's end.
var errPastEnd = errors.New("caspaxos/etcdapi: past the range's end")

// rangeOptions says how a Range wants its keys.
type rangeOptions struct {
	limit              int64
	keysOnly, count    bool
	full               bool // sort or filter: read the whole range first
	sortDesc, sortKeys bool
}

// Range serves KV.Range.
func (s *Server) Range(ctx context.Context, r *etcdpb.RangeRequest) (*etcdpb.RangeResponse, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	resp, err := c.rangeKeys(r)
	if err != nil {
		return nil, statusOf(err)
	}
	return resp, nil
}

// errCreateRanking: a Range for the first or last key created under a
// range, which is how clientv3's concurrency package ranks waiters.
var errCreateRanking = fmt.Errorf("%w: a Range for the first or last key created in a range (sorted by create_revision, limit 1) is how clientv3's concurrency Mutex and Election (etcdctl lock, etcdctl elect) rank waiters, and caspaxos's revisions are per key, so that ranking would be wrong; use etcd's v3lock and v3election services, which caspaxos serves on its native locks (docs/locks.md), or `caspaxos lock`", errUnsupported)

// createRanking says whether r asks for the first or last key created in
// a range (clientv3's WithFirstCreate, WithLastCreate).
func createRanking(r *etcdpb.RangeRequest) bool {
	return len(r.GetRangeEnd()) != 0 && r.GetSortTarget() == etcdpb.RangeRequest_CREATE && r.GetLimit() == 1
}

// checkRange refuses what a Range cannot honour.
func checkRange(r *etcdpb.RangeRequest) error {
	if createRanking(r) {
		return errCreateRanking
	}
	if r.GetRevision() != 0 {
		return fmt.Errorf("%w: Range at revision %d: caspaxos keeps only each key's latest state, no history to read at a revision; read with revision 0 (the latest)", errUnsupported, r.GetRevision())
	}
	if r.GetLimit() < 0 {
		return fmt.Errorf("%w: limit %d is negative", errBadRequest, r.GetLimit())
	}
	if len(r.GetKey()) == 0 && len(r.GetRangeEnd()) == 0 {
		return kv.ErrEmptyKey
	}
	return nil
}

func (c *call) rangeKeys(r *etcdpb.RangeRequest) (*etcdpb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	kr := keyRange{key: r.GetKey(), end: r.GetRangeEnd()}
	if kr.single() {
		return c.rangeOne(r)
	}
	opt := rangeOptions{limit: r.GetLimit(), keysOnly: r.GetKeysOnly(), count: r.GetCountOnly()}
	switch r.GetSortOrder() {
	case etcdpb.RangeRequest_NONE, etcdpb.RangeRequest_ASCEND:
	case etcdpb.RangeRequest_DESCEND:
		opt.sortDesc = true
	default:
		return nil, fmt.Errorf("%w: sort_order %d", errBadRequest, r.GetSortOrder())
	}
	opt.sortKeys = r.GetSortTarget() == etcdpb.RangeRequest_KEY
	opt.full = opt.sortDesc || (!opt.sortKeys && r.GetSortOrder() != etcdpb.RangeRequest_NONE) ||
		r.GetMinModRevision() != 0 || r.GetMaxModRevision() != 0 || r.GetMinCreateRevision() != 0 || r.GetMaxCreateRevision() != 0
	if opt.full {
		return c.rangeFull(r, kr, opt)
	}
	return c.rangeStream(kr, opt)
}

// rangeOne reads one key.
func (c *call) rangeOne(r *etcdpb.RangeRequest) (*etcdpb.RangeResponse, error) {
	st, err := c.do(kv.Op{Kind: kv.OpGet, Key: string(r.GetKey())})
	if err != nil {
		return nil, err
	}
	resp := &etcdpb.RangeResponse{Header: c.s.header(st.Version)}
	if !st.Exists() || !matchesFilters(r, st) {
		return resp, nil
	}
	resp.Count = 1
	if !r.GetCountOnly() {
		resp.Kvs = []*mvccpb.KeyValue{keyValue(string(r.GetKey()), st, r.GetKeysOnly())}
	}
	return resp, nil
}

// matchesFilters applies a Range's min/max revision filters.
func matchesFilters(r *etcdpb.RangeRequest, st protocol.State) bool {
	in := func(v uint64, lo, hi int64) bool {
		return (lo == 0 || int64(v) >= lo) && (hi == 0 || int64(v) <= hi)
	}
	c, _ := createRevision(st)
	return in(st.Version, r.GetMinModRevision(), r.GetMaxModRevision()) &&
		in(c, r.GetMinCreateRevision(), r.GetMaxCreateRevision())
}

// walk lists the range page by page, calling fn for each key the caller may
// read, until fn returns false or the range ends. keysOnly: no values.
func (c *call) walk(kr keyRange, keysOnly bool, fn func(kv.ListItem) (bool, error)) error {
	prefix, after := kr.listStart()
	if err := kv.CheckClientKey(prefix); err != nil {
		return err
	}
	stop := errors.New("stop")
	allow := func(key string) (bool, error) {
		if kr.past(key) {
			return false, errPastEnd
		}
		if !kr.contains(key) {
			return false, nil
		}
		err := c.allowed(auth.Access{Perm: auth.PermRead, Key: key})
		if errors.Is(err, kv.ErrPermissionDenied) {
			return false, nil
		}
		return err == nil, err
	}
	for {
		req := kv.ListRequest{Prefix: prefix, After: after, Limit: kv.MaxListLimit, KeysOnly: keysOnly}
		if err := req.Validate(c.s.cfg.Limits); err != nil {
			return err
		}
		start := after
		emit := func(it kv.ListItem) error {
			after = it.Key
			if it.ValueOmitted && !keysOnly {
				// Too large for a listing: read it by itself.
				st, err := c.s.b.Do(c.ctx, kv.Op{Kind: kv.OpGet, Key: it.Key})
				if err != nil {
					return err
				}
				if !st.Exists() {
					return nil
				}
				it.Value, it.Version, it.Created, it.ValueOmitted = st.Value, st.Version, st.Created, false
			}
			ok, err := fn(it)
			if err == nil && !ok {
				err = stop
			}
			return err
		}
		more, err := c.s.b.List(c.ctx, req, allow, emit)
		switch {
		case errors.Is(err, errPastEnd), errors.Is(err, stop):
			return nil
		case err != nil:
			return err
		case !more:
			return nil
		case after == start:
			// A page said there is more but gave no key to go on from.
			return fmt.Errorf("caspaxos/etcdapi: a listing page after %q ended at its limit without a key", start)
		}
	}
}

// itemKV is the etcd view of a listed key.
func itemKV(it kv.ListItem, keysOnly bool) *mvccpb.KeyValue {
	return keyValue(it.Key, protocol.State{Value: it.Value, Version: it.Version, Created: it.Created, Attrs: it.Attrs}, keysOnly)
}

// rangeStream serves a range in key order: the first limit keys, then,
// for the count, the rest without values.
func (c *call) rangeStream(kr keyRange, opt rangeOptions) (*etcdpb.RangeResponse, error) {
	resp := &etcdpb.RangeResponse{Header: c.s.header(0)}
	err := c.walk(kr, opt.keysOnly || opt.count, func(it kv.ListItem) (bool, error) {
		if !opt.count && opt.limit > 0 && int64(len(resp.Kvs)) == opt.limit {
			resp.More = true // it is counted by the walk below
			return false, nil
		}
		resp.Count++
		if !opt.count {
			resp.Kvs = append(resp.Kvs, itemKV(it, opt.keysOnly))
		}
		return true, nil
	})
	if err != nil || !resp.More {
		return resp, err
	}
	last := resp.Kvs[len(resp.Kvs)-1].Key
	rest := keyRange{key: append(append([]byte(nil), last...), 0), end: kr.end}
	err = c.walk(rest, true, func(kv.ListItem) (bool, error) { resp.Count++; return true, nil })
	return resp, err
}

// rangeFull reads the whole range, filters and sorts it here, then limits.
func (c *call) rangeFull(r *etcdpb.RangeRequest, kr keyRange, opt rangeOptions) (*etcdpb.RangeResponse, error) {
	resp := &etcdpb.RangeResponse{Header: c.s.header(0)}
	var kvs []*mvccpb.KeyValue
	err := c.walk(kr, opt.keysOnly || opt.count, func(it kv.ListItem) (bool, error) {
		resp.Count++
		st := protocol.State{Value: it.Value, Version: it.Version, Created: it.Created}
		if matchesFilters(r, st) {
			kvs = append(kvs, itemKV(it, opt.keysOnly))
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if opt.count {
		return resp, nil
	}
	sortKVs(kvs, r.GetSortTarget(), opt.sortDesc)
	if opt.limit > 0 && int64(len(kvs)) > opt.limit {
		kvs, resp.More = kvs[:opt.limit], true
	}
	resp.Kvs = kvs
	return resp, nil
}

// sortKVs sorts by target, ties by key, descending if desc.
func sortKVs(kvs []*mvccpb.KeyValue, target etcdpb.RangeRequest_SortTarget, desc bool) {
	slices.SortStableFunc(kvs, func(a, b *mvccpb.KeyValue) int {
		var c int
		switch target {
		case etcdpb.RangeRequest_VERSION:
			c = cmp.Compare(a.Version, b.Version)
		case etcdpb.RangeRequest_CREATE:
			c = cmp.Compare(a.CreateRevision, b.CreateRevision)
		case etcdpb.RangeRequest_MOD:
			c = cmp.Compare(a.ModRevision, b.ModRevision)
		case etcdpb.RangeRequest_VALUE:
			c = bytes.Compare(a.Value, b.Value)
		}
		if c == 0 {
			c = bytes.Compare(a.Key, b.Key)
		}
		if desc {
			c = -c
		}
		return c
	})
}
