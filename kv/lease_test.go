package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

// FuzzDecodeLease: a lease value either decodes, and then re-encodes to
// the same bytes, or fails with ErrBadLease.
func FuzzDecodeLease(f *testing.F) {
	f.Add(EncodeLease(Lease{TTLMillis: 10_000, RenewedMillis: 1733400000000, State: LeaseLive}))
	f.Add(EncodeLease(Lease{TTLMillis: 100, RenewedMillis: -5, State: LeaseRevoked}))
	f.Add([]byte{1, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLease(b)
		if err != nil {
			if !errors.Is(err, ErrBadLease) || l != (Lease{}) {
				t.Fatalf("%x: %+v, %v", b, l, err)
			}
			return
		}
		if again, err := DecodeLease(EncodeLease(l)); err != nil || again != l {
			t.Fatalf("%+v re-encoded decodes to %+v, %v", l, again, err)
		}
	})
}

func TestLeaseChanges(t *testing.T) {
	const ttl, skew = 1000, 50
	step := func(cur protocol.State, ch protocol.Change) (protocol.State, error) {
		w, err := ch(cur)
		if err != nil {
			return cur, err
		}
		return protocol.Apply(cur, w, 0)
	}
	s, err := step(protocol.State{}, LeaseGrant(ttl, 5000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := step(s, LeaseGrant(ttl, 5001, 0)); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("grant of a live lease: %v", err)
	}
	for _, tc := range []struct {
		name string
		now  int64
		ok   bool
	}{
		{"at renewed + ttl + skew", 5000 + ttl + skew, false},
		{"just past it", 5000 + ttl + skew + 1, true},
		{"a clock far behind", 0, false},
	} {
		if _, err := step(s, LeaseExpire(tc.now, skew)); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrLeaseNotExpired)) {
			t.Fatalf("%s: expire: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// A renewal by a proposer whose clock is behind never moves the
	// renewal time back.
	s2, _ := step(s, LeaseKeepAlive(4000))
	if l, _ := LeaseOf(s2); l.RenewedMillis != 5000 {
		t.Fatalf("renewed %d after a keep-alive from a slow clock, want 5000", l.RenewedMillis)
	}
	s3, _ := step(s2, LeaseKeepAlive(5600))
	if _, err := step(s3, LeaseExpire(5000+ttl+skew+1, skew)); !errors.Is(err, ErrLeaseNotExpired) {
		t.Fatalf("expire after a renewal: %v", err)
	}
	e, err := step(s3, LeaseExpire(5600+ttl+skew+1, skew))
	if l, _ := LeaseOf(e); err != nil || l.State != LeaseExpired {
		t.Fatalf("expire: %+v, %v", l, err)
	}
	if _, err := step(e, LeaseKeepAlive(9000)); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
	r, _ := step(s3, LeaseRevoke())
	if l, _ := LeaseOf(r); l.State != LeaseRevoked || !bytes.Equal(r.Value, EncodeLease(l)) {
		t.Fatalf("revoke: %+v", l)
	}
	for name, st := range map[string]protocol.State{"revoked": r, "expired": e, "deleted": {Version: 9, Deleted: true}} {
		if _, err := step(st, LeaseGrant(ttl, 9000, 0)); !errors.Is(err, ErrLeaseExists) {
			t.Fatalf("grant of a %s ID: %v", name, err)
		}
	}
	if err := CheckLeaseTTL(50 * 1e6); !errors.Is(err, ErrBadLease) {
		t.Fatalf("ttl 50ms: %v", err)
	}
}

// TestAttachedChanges: the writes that take a lease attach the key to it
// (or, without one, detach it) and keep its other attributes; an
// increment keeps the key's lease; DeleteAttached deletes a key only while
// it is attached to its lease.
func TestAttachedChanges(t *testing.T) {
	const lease, other = 7, 8
	live := protocol.State{Value: []byte("1"), Version: 3, Created: 2,
		Attrs: protocol.Attrs{Lease: lease, Flags: 5, LockIndex: 2}}
	tomb := protocol.State{Version: 4, Deleted: true}
	for _, tc := range []struct {
		name string
		cur  protocol.State
		op   Op
		want protocol.State // after the change (Version/Created as Apply gives them)
		err  error
	}{
		{"put attaches", protocol.State{}, Op{Kind: OpPut, Value: []byte("v"), Lease: lease},
			protocol.State{Value: []byte("v"), Version: 1, Created: 1, Attrs: protocol.Attrs{Lease: lease}}, nil},
		{"put without a lease detaches, keeps flags", live, Op{Kind: OpPut, Value: []byte("v")},
			protocol.State{Value: []byte("v"), Version: 4, Created: 2, Attrs: protocol.Attrs{Flags: 5, LockIndex: 2}}, nil},
		{"put moves to another lease", live, Op{Kind: OpPut, Value: []byte("v"), Lease: other},
			protocol.State{Value: []byte("v"), Version: 4, Created: 2, Attrs: protocol.Attrs{Lease: other, Flags: 5, LockIndex: 2}}, nil},
		{"create on a tombstone attaches", tomb, Op{Kind: OpCreate, Value: []byte("v"), Lease: lease},
			protocol.State{Value: []byte("v"), Version: 5, Created: 5, Attrs: protocol.Attrs{Lease: lease}}, nil},
		{"create on a live key is refused", live, Op{Kind: OpCreate, Value: []byte("v"), Lease: other},
			live, ErrVersionMismatch},
		{"cas attaches", live, Op{Kind: OpCompareAndSwap, Version: 3, Value: []byte("v"), Lease: other},
			protocol.State{Value: []byte("v"), Version: 4, Created: 2, Attrs: protocol.Attrs{Lease: other, Flags: 5, LockIndex: 2}}, nil},
		{"cas of another version is refused", live, Op{Kind: OpCompareAndSwap, Version: 2, Value: []byte("v"), Lease: other},
			live, ErrVersionMismatch},
		{"increment keeps the lease", live, Op{Kind: OpIncrement, Delta: 1},
			protocol.State{Value: []byte("2"), Version: 4, Created: 2, Attrs: live.Attrs}, nil},
		{"delete clears the lease", live, Op{Kind: OpDelete},
			protocol.State{Version: 4, Deleted: true}, nil},
		{"delete-attached deletes a key attached to the lease", live, Op{Kind: OpDeleteAttached, Lease: lease},
			protocol.State{Version: 4, Deleted: true}, nil},
		{"delete-attached keeps a key of another lease", live, Op{Kind: OpDeleteAttached, Lease: other}, live, nil},
		{"delete-attached keeps a key of no lease", protocol.State{Value: []byte("x"), Version: 3}, Op{Kind: OpDeleteAttached, Lease: lease},
			protocol.State{Value: []byte("x"), Version: 3}, nil},
		{"delete-attached keeps a tombstone", tomb, Op{Kind: OpDeleteAttached, Lease: lease}, tomb, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tc.op.ChangeAt(0, DefaultIdempotency())
			if err != nil {
				t.Fatal(err)
			}
			w, err := ch(tc.cur)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			got := tc.cur
			if err == nil {
				if got, err = protocol.Apply(tc.cur, w, 0); err != nil {
					t.Fatal(err)
				}
			}
			if !got.Equal(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidateLease(t *testing.T) {
	for _, tc := range []struct {
		op Op
		ok bool
	}{
		{Op{Kind: OpPut, Key: "k", Lease: 1}, true},
		{Op{Kind: OpCreate, Key: "k", Lease: 1}, true},
		{Op{Kind: OpCompareAndSwap, Key: "k", Version: 2, Lease: 1}, true},
		{Op{Kind: OpDeleteAttached, Key: "k", Lease: 1}, true},
		{Op{Kind: OpDeleteAttached, Key: "k"}, false},
		{Op{Kind: OpDelete, Key: "k", Lease: 1}, false},
		{Op{Kind: OpIncrement, Key: "k", Lease: 1}, false},
		{Op{Kind: OpGet, Key: "k", Lease: 1}, false},
		{Op{Kind: OpLeaseRevoke, Key: LeaseKey(1), Lease: 1}, false},
		{Op{Kind: OpPut, Key: "k", Flags: 1}, false},
		{Op{Kind: OpDeleteAttached + 1, Key: "k"}, false},
	} {
		err := tc.op.Validate(DefaultLimits)
		if (err == nil) != tc.ok {
			t.Errorf("%v %+v: %v, want ok=%v", tc.op.Kind, tc.op, err, tc.ok)
		}
	}
}

func TestLeaseIsLive(t *testing.T) {
	live := protocol.State{Value: EncodeLease(Lease{TTLMillis: 1000, State: LeaseLive}), Version: 1}
	revoked := protocol.State{Value: EncodeLease(Lease{TTLMillis: 1000, State: LeaseRevoked}), Version: 2}
	if err := LeaseIsLive(live); err != nil {
		t.Fatal(err)
	}
	for _, s := range []protocol.State{{}, revoked, {Version: 3, Deleted: true}} {
		if err := LeaseIsLive(s); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("%v: %v", s, err)
		}
	}
}

// TestLeaseKeysKeptStays: a grant's LeaseKeysKept stays in the lease
// register's flags through its keep-alives and its end, where the reaper
// reads it; a grant with any other flag is refused.
func TestLeaseKeysKeptStays(t *testing.T) {
	step := func(cur protocol.State, ch protocol.Change) protocol.State {
		t.Helper()
		w, err := ch(cur)
		if err != nil {
			t.Fatal(err)
		}
		next, err := protocol.Apply(cur, w, 0)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	s := step(protocol.State{}, LeaseGrant(1000, 5000, LeaseKeysKept))
	for _, ch := range []protocol.Change{LeaseKeepAlive(5500), LeaseExpire(7000, 50)} {
		if s = step(s, ch); s.Flags != LeaseKeysKept {
			t.Fatalf("lease %v lost its flags", s)
		}
	}
	if s := step(protocol.State{}, LeaseGrant(1000, 5000, 0)); s.Flags != 0 {
		t.Fatalf("a plain grant has flags %d", s.Flags)
	}
	for _, flags := range []uint64{LeaseKeysKept, 0} {
		op := Op{Kind: OpLeaseGrant, Key: LeaseKey(1), Delta: 1000, Flags: flags}
		if err := op.Validate(DefaultLimits); err != nil {
			t.Fatalf("grant with flags %d refused: %v", flags, err)
		}
	}
	if err := (Op{Kind: OpLeaseGrant, Key: LeaseKey(1), Delta: 1000, Flags: 2}).Validate(DefaultLimits); !errors.Is(err, ErrBadLease) {
		t.Fatalf("grant with an unknown flag: %v", err)
	}
}
