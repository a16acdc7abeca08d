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
	s, err := step(protocol.State{}, LeaseGrant(ttl, 5000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := step(s, LeaseGrant(ttl, 5001)); !errors.Is(err, ErrLeaseExists) {
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
	if _, err := step(r, LeaseGrant(ttl, 9000)); err != nil {
		t.Fatalf("grant of a revoked ID: %v", err)
	}
	if err := CheckLeaseTTL(50 * 1e6); !errors.Is(err, ErrBadLease) {
		t.Fatalf("ttl 50ms: %v", err)
	}
}
