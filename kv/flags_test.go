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
