package kv

import (
	"errors"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

func TestFlagsWrites(t *testing.T) {
	held := protocol.State{Value: []byte("a"), Version: 7, Created: 3, Attrs: protocol.Attrs{Lease: 9, Flags: 1, LockIndex: 2}}
	gone := protocol.State{Version: 8, Deleted: true}
	for _, tc := range []struct {
		name    string
		op      Op
		cur     protocol.State
		attrs   protocol.Attrs
		wantErr error
	}{
		{"put keeps the lock, replaces flags", Op{Kind: OpPutFlags, Key: "k", Value: []byte("b"), Flags: 42}, held, protocol.Attrs{Lease: 9, Flags: 42, LockIndex: 2}, nil},
		{"put without flags stores 0", Op{Kind: OpPutFlags, Key: "k", Value: []byte("b")}, held, protocol.Attrs{Lease: 9, LockIndex: 2}, nil},
		{"put on a tombstone starts clean", Op{Kind: OpPutFlags, Key: "k", Flags: 5}, gone, protocol.Attrs{Flags: 5}, nil},
		{"cas on the version", Op{Kind: OpCompareAndSwapFlags, Key: "k", Version: 7, Flags: 3}, held, protocol.Attrs{Lease: 9, Flags: 3, LockIndex: 2}, nil},
		{"cas on another version", Op{Kind: OpCompareAndSwapFlags, Key: "k", Version: 6, Flags: 3}, held, protocol.Attrs{}, ErrVersionMismatch},
		{"cas 0 creates", Op{Kind: OpCompareAndSwapFlags, Key: "k", Flags: 3}, gone, protocol.Attrs{Flags: 3}, nil},
		{"cas 0 on a live key", Op{Kind: OpCompareAndSwapFlags, Key: "k"}, held, protocol.Attrs{}, ErrVersionMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op.Validate(DefaultLimits); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			w, err := tc.op.Change()(tc.cur)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if w.Kind != protocol.WriteSet || w.Attrs == nil || *w.Attrs != tc.attrs || string(w.Value) != string(tc.op.Value) {
				t.Fatalf("write %+v attrs %+v, want attrs %+v", w, w.Attrs, tc.attrs)
			}
		})
	}
	// Flags stay refused on the operations that do not store them.
	if err := (Op{Kind: OpPut, Key: "k", Flags: 1}).Validate(DefaultLimits); err == nil {
		t.Fatal("a put with flags was accepted")
	}
}

func TestKeyLockOps(t *testing.T) {
	free := protocol.State{Value: []byte("a"), Version: 4, Created: 1, Attrs: protocol.Attrs{Flags: 1, LockIndex: 2}}
	held := protocol.State{Value: []byte("a"), Version: 5, Created: 1, Attrs: protocol.Attrs{Lease: 9, Flags: 1, LockIndex: 3}}
	gone := protocol.State{Version: 6, Deleted: true}
	for _, tc := range []struct {
		name    string
		op      Op
		cur     protocol.State
		attrs   protocol.Attrs
		wantErr error
	}{
		{"acquire a free key", Op{Kind: OpKeyAcquire, Key: "k", Lease: 7, Flags: 8}, free, protocol.Attrs{Lease: 7, Flags: 8, LockIndex: 3}, nil},
		{"acquire an absent key", Op{Kind: OpKeyAcquire, Key: "k", Lease: 7}, gone, protocol.Attrs{Lease: 7, LockIndex: 1}, nil},
		{"acquire again by the holder", Op{Kind: OpKeyAcquire, Key: "k", Lease: 9, Flags: 2}, held, protocol.Attrs{Lease: 9, Flags: 2, LockIndex: 3}, nil},
		{"acquire a held key", Op{Kind: OpKeyAcquire, Key: "k", Lease: 7}, held, protocol.Attrs{}, ErrKeyHeld},
		{"release by the holder", Op{Kind: OpKeyRelease, Key: "k", Lease: 9, Flags: 4}, held, protocol.Attrs{Flags: 4, LockIndex: 3}, nil},
		{"release by another", Op{Kind: OpKeyRelease, Key: "k", Lease: 7}, held, protocol.Attrs{}, ErrKeyNotHeld},
		{"release of a free key", Op{Kind: OpKeyRelease, Key: "k", Lease: 9}, free, protocol.Attrs{}, ErrKeyNotHeld},
		{"release at the version", Op{Kind: OpKeyRelease, Key: "k", Lease: 9, Version: 5, Flags: 1}, held, protocol.Attrs{Flags: 1, LockIndex: 3}, nil},
		{"release at another version", Op{Kind: OpKeyRelease, Key: "k", Lease: 9, Version: 4}, held, protocol.Attrs{}, ErrVersionMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op.Validate(DefaultLimits); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			w, err := tc.op.Change()(tc.cur)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && (w.Attrs == nil || *w.Attrs != tc.attrs) {
				t.Fatalf("attrs %+v, want %+v", w.Attrs, tc.attrs)
			}
		})
	}
	if err := (Op{Kind: OpKeyAcquire, Key: "k"}).Validate(DefaultLimits); err == nil {
		t.Fatal("an acquire without a lease was accepted")
	}
	if c, _ := Code(ErrKeyHeld); c != CodeKeyHeld {
		t.Fatalf("ErrKeyHeld's code is %q", c)
	}
}
