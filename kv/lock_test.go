package kv

import (
	"errors"
	"reflect"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

// FuzzDecodeLock: a lock value either decodes, and then its encoding
// decodes to the same lock, or fails with ErrBadLock.
func FuzzDecodeLock(f *testing.F) {
	f.Add(EncodeLock(Lock{Holder: 0x2a, Owner: "host-1", DelayMillis: 15_000, Value: []byte("leader")}))
	f.Add(EncodeLock(Lock{NotBeforeMillis: 1733400000000, DelayMillis: 1}))
	f.Add([]byte{1, 0, 5, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLock(b)
		if err != nil {
			if !errors.Is(err, ErrBadLock) || !reflect.DeepEqual(l, Lock{}) {
				t.Fatalf("%x: %+v, %v", b, l, err)
			}
			return
		}
		if again, err := DecodeLock(EncodeLock(l)); err != nil || !reflect.DeepEqual(again, l) {
			t.Fatalf("%x decodes to %+v, which re-encoded decodes to %+v, %v", b, l, again, err)
		}
	})
}

// TestLockChanges runs each lock change on a table of states: who may
// acquire, release, break and proclaim, and what each leaves.
func TestLockChanges(t *testing.T) {
	const now = 10_000
	held := func(lease uint64) Lock { return Lock{Holder: lease, Owner: "o", DelayMillis: 500, Value: []byte("v")} }
	state := func(l Lock, version uint64) protocol.State {
		return protocol.State{Value: EncodeLock(l), Version: version}
	}
	for _, tc := range []struct {
		name    string
		cur     protocol.State
		change  protocol.Change
		want    *Lock // nil: refused
		wantErr error
	}{
		{"acquire absent", protocol.State{}, LockAcquire(held(7), now), &Lock{Holder: 7, Owner: "o", DelayMillis: 500, Value: []byte("v")}, nil},
		{"acquire free", state(Lock{DelayMillis: 1}, 3), LockAcquire(held(7), now), &Lock{Holder: 7, Owner: "o", DelayMillis: 500, Since: 3, Value: []byte("v")}, nil},
		{"acquire held by another", state(held(8), 3), LockAcquire(held(7), now), nil, ErrLocked},
		{"acquire held by itself again", state(held(7), 3), LockAcquire(Lock{Holder: 7, Owner: "p"}, now), &Lock{Holder: 7, Owner: "p", Since: 3}, nil},
		{"acquire within the lock delay", state(Lock{NotBeforeMillis: now + 1}, 3), LockAcquire(held(7), now), nil, ErrLocked},
		{"acquire at not_before", state(Lock{NotBeforeMillis: now}, 3), LockAcquire(held(7), now), &Lock{Holder: 7, Owner: "o", DelayMillis: 500, Since: 3, Value: []byte("v")}, nil},
		{"acquire of a corrupt value", protocol.State{Value: []byte{9}, Version: 1}, LockAcquire(held(7), now), nil, ErrBadLock},
		{"release by the holder", state(held(7), 3), LockRelease(7, 0), &Lock{DelayMillis: 500}, nil},
		{"release of the hold by its token", state(Lock{Holder: 7, Since: 5}, 6), LockRelease(7, 6), &Lock{}, nil},
		{"release of the hold after a proclaim", state(Lock{Holder: 7, Since: 5}, 8), LockRelease(7, 6), &Lock{}, nil},
		{"release of an earlier hold of the lease", state(Lock{Holder: 7, Since: 5}, 6), LockRelease(7, 5), nil, ErrNotLockHolder},
		{"release by another", state(held(8), 3), LockRelease(7, 0), nil, ErrNotLockHolder},
		{"release of a free lock", state(Lock{}, 3), LockRelease(7, 0), nil, ErrNotLockHolder},
		{"release of an absent lock", protocol.State{}, LockRelease(7, 0), nil, ErrNotLockHolder},
		{"break at the judged version", state(held(7), 3), LockBreak(7, 3, now), &Lock{NotBeforeMillis: now + 500, DelayMillis: 500}, nil},
		{"break of a later state", state(held(7), 4), LockBreak(7, 3, now), nil, ErrVersionMismatch},
		{"break of another holder", state(held(8), 3), LockBreak(7, 3, now), nil, ErrNotLockHolder},
		{"break of a free lock", state(Lock{}, 3), LockBreak(0, 3, now), nil, ErrNotLockHolder},
		{"proclaim by the leader", state(held(7), 3), LockProclaim(7, 0, []byte("w")), &Lock{Holder: 7, Owner: "o", DelayMillis: 500, Value: []byte("w")}, nil},
		{"proclaim in the hold of its token", state(Lock{Holder: 7, Since: 5}, 9), LockProclaim(7, 6, []byte("w")), &Lock{Holder: 7, Since: 5, Value: []byte("w")}, nil},
		{"proclaim of an earlier hold of the lease", state(Lock{Holder: 7, Since: 5}, 9), LockProclaim(7, 4, []byte("w")), nil, ErrNotLockHolder},
		{"proclaim by another", state(held(8), 3), LockProclaim(7, 0, []byte("w")), nil, ErrNotLockHolder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := tc.change(tc.cur)
			if tc.want == nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || w.Kind != protocol.WriteSet {
				t.Fatalf("%+v, %v", w, err)
			}
			got, err := DecodeLock(w.Value)
			if err != nil || !reflect.DeepEqual(got, *tc.want) {
				t.Fatalf("left %+v (%v), want %+v", got, err, *tc.want)
			}
			next, err := protocol.Apply(tc.cur, w, 0)
			if err != nil || next.Version <= tc.cur.Version {
				t.Fatalf("version %d after %d: the token must rise (%v)", next.Version, tc.cur.Version, err)
			}
		})
	}
}

// TestLockOps: the operations as data validate and run as the change
// functions do, and bad ones are refused.
func TestLockOps(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   Op
		ok   bool
	}{
		{"acquire", LockAcquireOp("a", Lock{Holder: 7, DelayMillis: 10}), true},
		{"acquire without a lease", LockAcquireOp("a", Lock{}), false},
		{"acquire with not_before", LockAcquireOp("a", Lock{Holder: 7, NotBeforeMillis: 1}), false},
		{"acquire with a bad value", Op{Kind: OpLockAcquire, Key: LockKey("a"), Value: []byte{2}}, false},
		{"release", LockReleaseOp("a", 7, 0), true},
		{"release of lease 0", LockReleaseOp("a", 0, 0), false},
		{"break", LockBreakOp("a", 7, 3), true},
		{"proclaim", LockProclaimOp("a", 1<<63, 0, []byte("x")), true},
		{"empty name", LockReleaseOp("", 7, 0), false},
		{"reserved name", LockReleaseOp("\x00x", 7, 0), false},
		{"a key that is no lock's", Op{Kind: OpLockRelease, Key: "a", Delta: 7}, false},
		{"a request ID", Op{Kind: OpLockRelease, Key: LockKey("a"), Delta: 7, RequestID: "x"}, false},
	} {
		err := tc.op.Validate(DefaultLimits)
		if (err == nil) != tc.ok {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.ok {
			continue
		}
		if _, err := tc.op.ChangeAt(1, DefaultIdempotency()); err != nil {
			t.Fatalf("%s: ChangeAt: %v", tc.name, err)
		}
	}
	// A lease ID with the top bit set survives Delta's int64.
	w, err := mustChange(t, LockProclaimOp("a", 1<<63|5, 0, []byte("x")))(protocol.State{Value: EncodeLock(Lock{Holder: 1<<63 | 5}), Version: 1})
	if err != nil || w.Kind != protocol.WriteSet {
		t.Fatalf("proclaim by a lease ID above 2^63: %v", err)
	}
}

func mustChange(t *testing.T, op Op) protocol.Change {
	t.Helper()
	ch, err := op.ChangeAt(1, DefaultIdempotency())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
