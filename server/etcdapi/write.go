package etcdapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
)

// write is what a plan decides for one key: keep it, set a value (and
// the lease it attaches the key to, 0: none), or delete it.
type write struct {
	kind  protocol.WriteKind
	value []byte
	lease uint64
}

// update reads key, asks plan what to write given the state read, and
// writes it as a compare-and-swap on the version read, so that the write
// applies to exactly the state plan saw (a version names one state of a
// register for ever; an absent key's etcd view is the same whatever its
// tombstone). On a conflict it starts again from the read, at most
// MaxTxnAttempts times. It returns the state plan saw and the state after.
func (c *call) update(key string, plan func(before protocol.State) (write, error)) (before, after protocol.State, err error) {
	for range c.s.cfg.MaxTxnAttempts {
		if before, err = c.do(kv.Op{Kind: kv.OpGet, Key: key}); err != nil {
			return before, before, err
		}
		w, err := plan(before)
		if err != nil {
			return before, before, err
		}
		var op kv.Op
		switch {
		case w.kind == protocol.WriteSet:
			op = kv.Op{Kind: kv.OpCompareAndSwap, Key: key, Version: kv.CurrentVersion(before), Value: w.value, Lease: w.lease}
		case w.kind == protocol.WriteDelete && before.Exists():
			op = kv.Op{Kind: kv.OpDelete, Key: key, Version: before.Version}
		default:
			return before, before, nil
		}
		after, err = c.do(op)
		if errors.Is(err, kv.ErrVersionMismatch) || errors.Is(err, kv.ErrNotFound) {
			continue // changed since the read: plan again on the new state
		}
		return before, after, err
	}
	return before, before, fmt.Errorf("%w: key %q changed under %d attempts in a row; nothing was applied, retry", errContended, key, c.s.cfg.MaxTxnAttempts)
}

// checkLease refuses a lease ID that no lease has: etcd's are positive
// int64s, as are the IDs this port grants (a node's lease IDs above
// 2^63 cannot be named here).
func checkLease(id int64) error {
	if id < 0 {
		return fmt.Errorf("%w: Put with lease %d: a lease ID is positive", errBadRequest, id)
	}
	return nil
}

// Put serves KV.Put.
func (s *Server) Put(ctx context.Context, r *etcdpb.PutRequest) (*etcdpb.PutResponse, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	resp, err := c.put(r)
	if err != nil {
		return nil, statusOf(err)
	}
	return resp, nil
}

// putPlan is what a Put writes on before: its value, or with ignore_value
// the value before (which must exist, as with ignore_lease).
func putPlan(r *etcdpb.PutRequest) func(protocol.State) (write, error) {
	return func(before protocol.State) (write, error) {
		if (r.GetIgnoreValue() || r.GetIgnoreLease()) && !before.Exists() {
			return write{}, fmt.Errorf("%w: ignore_value or ignore_lease on key %q, which does not exist", errBadRequest, r.GetKey())
		}
		w := write{kind: protocol.WriteSet, value: r.GetValue(), lease: uint64(r.GetLease())}
		if r.GetIgnoreValue() {
			w.value = before.Value
		}
		if r.GetIgnoreLease() {
			w.lease = before.Lease
		}
		return w, nil
	}
}

func (c *call) put(r *etcdpb.PutRequest) (*etcdpb.PutResponse, error) {
	if err := checkLease(r.GetLease()); err != nil {
		return nil, err
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return nil, fmt.Errorf("%w: ignore_value with a value", errBadRequest)
	}
	key := string(r.GetKey())
	if !r.GetPrevKv() && !r.GetIgnoreValue() && !r.GetIgnoreLease() {
		st, err := c.do(kv.Op{Kind: kv.OpPut, Key: key, Value: r.GetValue(), Lease: uint64(r.GetLease())})
		if err != nil {
			return nil, err
		}
		return &etcdpb.PutResponse{Header: c.s.header(st.Version)}, nil
	}
	before, after, err := c.update(key, putPlan(r))
	if err != nil {
		return nil, err
	}
	resp := &etcdpb.PutResponse{Header: c.s.header(after.Version)}
	if r.GetPrevKv() && before.Exists() {
		resp.PrevKv = keyValue(key, before, false)
	}
	return resp, nil
}

// DeleteRange serves KV.DeleteRange.
func (s *Server) DeleteRange(ctx context.Context, r *etcdpb.DeleteRangeRequest) (*etcdpb.DeleteRangeResponse, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	kr := keyRange{key: r.GetKey(), end: r.GetRangeEnd()}
	var resp *etcdpb.DeleteRangeResponse
	switch {
	case len(kr.key) == 0 && kr.single():
		err = kv.ErrEmptyKey
	case kr.single():
		resp, err = c.deleteOne(string(kr.key), r.GetPrevKv())
	default:
		resp, err = c.deleteRange(kr, r.GetPrevKv())
	}
	if err != nil {
		return nil, statusOf(err)
	}
	return resp, nil
}

// deleteOne deletes one key: a plain delete, or with prev_kv a read and a
// delete of the version read.
func (c *call) deleteOne(key string, prevKV bool) (*etcdpb.DeleteRangeResponse, error) {
	if !prevKV {
		st, err := c.do(kv.Op{Kind: kv.OpDelete, Key: key})
		switch {
		case errors.Is(err, kv.ErrNotFound):
			return &etcdpb.DeleteRangeResponse{Header: c.s.header(st.Version)}, nil
		case err != nil:
			return nil, err
		}
		return &etcdpb.DeleteRangeResponse{Header: c.s.header(st.Version), Deleted: 1}, nil
	}
	before, after, err := c.update(key, func(protocol.State) (write, error) { return write{kind: protocol.WriteDelete}, nil })
	if err != nil {
		return nil, err
	}
	resp := &etcdpb.DeleteRangeResponse{Header: c.s.header(after.Version)}
	if before.Exists() {
		resp.Deleted, resp.PrevKvs = 1, []*mvccpb.KeyValue{keyValue(key, before, false)}
	}
	return resp, nil
}

// deleteRange lists the range, checks that the caller may delete every key
// listed, then deletes them one by one, each only while it still has the
// version listed (a key changed since is left alone). Not atomic: another
// client may see some keys deleted and others not yet.
func (c *call) deleteRange(kr keyRange, prevKV bool) (*etcdpb.DeleteRangeResponse, error) {
	var items []kv.ListItem
	err := c.walk(kr, !prevKV, func(it kv.ListItem) (bool, error) {
		items = append(items, it)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if err := c.allowed(auth.Access{Perm: auth.PermWrite, Key: it.Key}); err != nil {
			return nil, err
		}
	}
	resp := &etcdpb.DeleteRangeResponse{Header: c.s.header(0)}
	for _, it := range items {
		_, err := c.do(kv.Op{Kind: kv.OpDelete, Key: it.Key, Version: it.Version})
		switch {
		case errors.Is(err, kv.ErrVersionMismatch), errors.Is(err, kv.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("%w (%d keys of the range were deleted before it; the delete of a range is not atomic)", err, resp.Deleted)
		}
		resp.Deleted++
		if prevKV {
			resp.PrevKvs = append(resp.PrevKvs, itemKV(it, false))
		}
	}
	return resp, nil
}
