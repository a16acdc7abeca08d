package caspaxos

import (
	"bytes"
	"context"
	"errors"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// Value is a key's value and its version.
type Value struct {
	Data    []byte
	Version uint64
}

// Get returns the key's value, or ErrNotFound if it is absent or deleted.
func (s *Store) Get(ctx context.Context, key string) (Value, error) {
	st, err := s.do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
	if err != nil {
		return Value{}, err
	}
	if !st.Exists() {
		return Value{}, ErrNotFound
	}
	return Value{Data: st.Value, Version: st.Version}, nil
}

// Put stores value under key, whatever it holds, and returns the new version.
func (s *Store) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	st, err := s.do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: value})
	return st.Version, err
}

// Create stores value under key only if the key is absent or deleted, and
// returns the new version; otherwise it fails with a *VersionMismatchError.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	st, err := s.do(ctx, kv.Op{Kind: kv.OpCreate, Key: key, Value: value})
	return st.Version, err
}

// CompareAndSwap stores value under key only if the key's version is
// version (0: only if absent or deleted), and returns the new version;
// otherwise it fails with a *VersionMismatchError carrying the current one.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version uint64, value []byte) (uint64, error) {
	st, err := s.do(ctx, kv.Op{Kind: kv.OpCompareAndSwap, Key: key, Version: version, Value: value})
	return st.Version, err
}

// Delete removes the key; ErrNotFound if it is absent or already deleted.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.do(ctx, kv.Op{Kind: kv.OpDelete, Key: key})
	return err
}

// CompareAndDelete removes the key only if its version is version (not 0);
// otherwise it fails with a *VersionMismatchError carrying the current one.
func (s *Store) CompareAndDelete(ctx context.Context, key string, version uint64) error {
	if version == 0 {
		return errors.New("caspaxos: CompareAndDelete needs a version; Delete deletes whatever the version")
	}
	_, err := s.do(ctx, kv.Op{Kind: kv.OpDelete, Key: key, Version: version})
	return err
}

// Increment adds delta to the decimal int64 stored under key (absent counts
// as 0) and returns the new value and version. It fails with
// ErrNotAnInteger if the value is not one, and with ErrOverflow if the sum
// leaves the int64 range; the key is then left as it was.
func (s *Store) Increment(ctx context.Context, key string, delta int64) (value int64, version uint64, err error) {
	st, err := s.do(ctx, kv.Op{Kind: kv.OpIncrement, Key: key, Delta: delta})
	if err != nil {
		return 0, 0, err
	}
	n, err := kv.Integer(st)
	return n, st.Version, err
}

// Change applies fn to the key's current state and returns the state after
// it. fn must be deterministic and free of side effects: it may run more
// than once, and only the run whose result was chosen counts. A value it
// writes is checked against the limits; fn's own error is returned as it is,
// once the state fn saw is known to be chosen. The returned State's Value
// belongs to the caller.
func (s *Store) Change(ctx context.Context, key string, fn protocol.Change) (protocol.State, error) {
	if fn == nil {
		return protocol.State{}, errors.New("caspaxos: Change with a nil function")
	}
	limits := s.limits
	checked := func(cur protocol.State) (protocol.Write, error) {
		w, err := fn(cur)
		if err == nil && w.Kind == protocol.WriteSet {
			if err := limits.CheckValue(w.Value); err != nil {
				return protocol.Write{}, err
			}
			w.Value = bytes.Clone(w.Value)
		}
		return w, err
	}
	return s.run(ctx, server.Request{Op: kv.Op{Key: key}, Change: checked})
}

// do checks op against the limits and runs it.
func (s *Store) do(ctx context.Context, op kv.Op) (protocol.State, error) {
	if err := op.Validate(s.limits); err != nil {
		return protocol.State{}, err
	}
	// The value goes into messages and caches that outlive this call; the
	// caller may reuse its slice.
	op.Value = bytes.Clone(op.Value)
	return s.run(ctx, server.Request{Op: op})
}

// run sends req into the cluster through one node after the other until
// one that has not stopped takes it. A node that stopped applied nothing.
func (s *Store) run(ctx context.Context, req server.Request) (protocol.State, error) {
	if err := s.limits.CheckKey(req.Op.Key); err != nil {
		return protocol.State{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	first := int(s.next.Add(1) % uint64(len(s.nodes)))
	for i := range s.nodes {
		if s.closed.Load() {
			break
		}
		st, err := s.nodes[(first+i)%len(s.nodes)].Run(ctx, req)
		if !errors.Is(err, server.ErrStopped) {
			st.Value = bytes.Clone(st.Value)
			return st, err
		}
	}
	return protocol.State{}, ErrClosed
}
