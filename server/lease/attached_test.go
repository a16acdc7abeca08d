package lease_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/lease"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

// staleIndex is the store of an acceptor that missed some writes: its
// attached index still lists the entries it had when frozen, beside the
// store's current ones (the real staleness of an index, which only the
// committed change may overrule).
type staleIndex struct {
	*storage.Memory
	frozen []storage.Attached
}

func (s *staleIndex) ScanAttached(afterLease uint64, afterKey string, fn func(lease uint64, key string) bool) error {
	var all []storage.Attached
	err := s.Memory.ScanAttached(afterLease, afterKey, func(lease uint64, key string) bool {
		all = append(all, storage.Attached{Lease: lease, Key: key})
		return true
	})
	if err != nil {
		return err
	}
	after := storage.Attached{Lease: afterLease, Key: afterKey}
	for _, a := range s.frozen {
		if cmpAttached(a, after) > 0 && !slices.Contains(all, a) {
			all = append(all, a)
		}
	}
	slices.SortFunc(all, cmpAttached)
	for _, a := range all {
		if !fn(a.Lease, a.Key) {
			return nil
		}
	}
	return nil
}

// held waits until st, the reaper's store, holds key attached to lease:
// a write returns once a quorum accepted it, and the reaper sweeps its own
// store only.
func held(t *testing.T, st *storage.Memory, key string, lease uint64) {
	t.Helper()
	servertest.WaitFor(t, fmt.Sprintf("%s attached to %d in the reaper's store", key, lease), func() bool {
		reg, err := st.Get(key)
		return err == nil && reg.State.Lease == lease
	})
}

func cmpAttached(a, b storage.Attached) int {
	if a.Lease != b.Lease {
		if a.Lease < b.Lease {
			return -1
		}
		return 1
	}
	switch {
	case a.Key < b.Key:
		return -1
	case a.Key > b.Key:
		return 1
	}
	return 0
}

// TestAttachedKeysEndWithTheirLease: keys attached to a lease survive
// while it is kept alive, vanish after it expires and at once after it is
// revoked (SweepLease), and a key put again without the lease, or with
// another, survives its first lease's end, even from a reaper whose index
// still lists it (an acceptor that missed the new put).
func TestAttachedKeysEndWithTheirLease(t *testing.T) {
	if err := attachedScenario(t, false); err != nil {
		t.Fatal(err)
	}
}

// TestAttachedKeysUnguardedDeleteIsCaught: the broken variant, whose
// sweep deletes without checking that the key is still attached, is
// caught by the same scenario (it deletes the key put again).
func TestAttachedKeysUnguardedDeleteIsCaught(t *testing.T) {
	err := attachedScenario(t, true)
	if err == nil {
		t.Fatal("the unguarded sweep went unnoticed")
	}
	t.Logf("caught: %v", err)
}

func attachedScenario(t *testing.T, unguarded bool) error {
	c := nodetest.New(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	const ttl = kv.MinLeaseTTL
	const expiring, revoked, other = 11, 12, 13
	const kept = 14 // granted with kv.LeaseKeysKept: its keys stay
	do := func(n int, op kv.Op) error {
		_, err := c.Node(protocol.NodeID(n)).Do(ctx, op)
		return err
	}
	for _, id := range []uint64{expiring, revoked, other} {
		if err := do(1, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: ttl.Milliseconds()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := do(1, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(kept), Delta: ttl.Milliseconds(), Flags: kv.LeaseKeysKept}); err != nil {
		t.Fatal(err)
	}
	put := func(key string, id uint64) {
		t.Helper()
		if err := do(2, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte(key), Lease: id}); err != nil {
			t.Fatalf("put %s with lease %d: %v", key, id, err)
		}
	}
	if err := do(2, kv.Op{Kind: kv.OpPut, Key: "x", Lease: 99}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("put with a lease never granted: %v", err)
	}
	for _, k := range []string{"e1", "e2", "detached", "moved"} {
		put(k, expiring)
	}
	put("r1", revoked)
	if err := do(3, kv.Op{Kind: kv.OpCreate, Key: "r2", Value: []byte("r2"), Lease: revoked}); err != nil {
		t.Fatal(err)
	}
	put("k1", kept)
	for k, id := range map[string]uint64{"e1": expiring, "e2": expiring, "detached": expiring, "moved": expiring, "r1": revoked, "r2": revoked, "k1": kept} {
		held(t, c.Stores[0], k, id)
	}
	var frozen []storage.Attached
	err := c.Stores[0].ScanAttached(0, "", func(lease uint64, key string) bool {
		frozen = append(frozen, storage.Attached{Lease: lease, Key: key})
		return true
	})
	if err != nil || len(frozen) != 7 {
		t.Fatalf("node 1's index: %v, %v", frozen, err)
	}
	put("detached", 0)
	put("moved", other)
	held(t, c.Stores[0], "detached", 0)
	held(t, c.Stores[0], "moved", other)
	r, err := lease.New(lease.Config{MaxClockSkew: time.Millisecond}, &staleIndex{Memory: c.Stores[0], frozen: frozen},
		c.Node(3), time.Now, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if unguarded {
		lease.BreakGuard(r)
	}
	keepAlive := func(ids ...uint64) {
		for _, id := range ids {
			if err := do(1, kv.Op{Kind: kv.OpLeaseKeepAlive, Key: kv.LeaseKey(id)}); err != nil {
				t.Fatalf("keep-alive of %d: %v", id, err)
			}
		}
	}
	// state returns the key's lease, or -1 when it is absent.
	state := func(key string) int64 {
		s, err := c.Node(2).Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Exists() {
			return -1
		}
		return int64(s.Lease)
	}
	check := func(when string, want map[string]int64) error {
		for k, w := range want {
			if got := state(k); got != w {
				return fmt.Errorf("%s: key %s has lease %d (-1: deleted), want %d", when, k, got, w)
			}
		}
		return nil
	}
	for range 6 {
		sent := time.Now()
		keepAlive(expiring, revoked, other, kept)
		r.Once()
		if err := check("while kept alive", map[string]int64{"e1": expiring, "e2": expiring, "r1": revoked, "r2": revoked, "detached": 0, "moved": other}); err != nil {
			return err
		}
		servertest.WaitFor(t, "a fifth of the TTL", func() bool { return time.Since(sent) >= ttl/5 })
	}
	if err := do(1, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(revoked)}); err != nil {
		t.Fatal(err)
	}
	r.SweepLease(revoked)
	if err := check("after the revoke's sweep", map[string]int64{"r1": -1, "r2": -1, "e1": expiring}); err != nil {
		return err
	}
	// A lease whose keys its front end settles (Consul's sessions): its
	// end leaves them to it.
	if err := do(1, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(kept)}); err != nil {
		t.Fatal(err)
	}
	r.SweepLease(kept)
	r.Once()
	if err := check("after a kept-keys lease's revoke and sweeps", map[string]int64{"k1": kept}); err != nil {
		return err
	}
	if err := do(2, kv.Op{Kind: kv.OpPut, Key: "r3", Lease: revoked}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("put with a revoked lease: %v", err)
	}
	// A write that passed its liveness check before the revoke and
	// committed after it (Propose skips the check, as a forward does): the
	// next sweep deletes it.
	if _, err := c.Node(2).Propose(ctx, server.Request{Op: kv.Op{Kind: kv.OpPut, Key: "late", Value: []byte("x"), Lease: revoked}}); err != nil {
		t.Fatal(err)
	}
	held(t, c.Stores[0], "late", revoked)
	r.Once()
	if err := check("the sweep after a write raced the revoke", map[string]int64{"late": -1}); err != nil {
		return err
	}
	// The revoked lease's ID is never granted again.
	if err := do(2, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(revoked), Delta: ttl.Milliseconds()}); !errors.Is(err, kv.ErrLeaseExists) {
		t.Fatalf("grant of a revoked ID: %v", err)
	}
	// Keep other alive while expiring expires and its keys go.
	deadline := time.Now().Add(10 * time.Second)
	for state("e1") != -1 || state("e2") != -1 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the keys of the expired lease are still there: e1 %d, e2 %d", state("e1"), state("e2"))
		}
		sent := time.Now()
		keepAlive(other)
		r.Once()
		servertest.WaitFor(t, "a fifth of the TTL", func() bool { return time.Since(sent) >= ttl/5 })
	}
	if err := check("after the expiry", map[string]int64{"detached": 0, "moved": other}); err != nil {
		return err
	}
	if st := r.Stats(); st.Ended < 2 || st.Detached < 4 {
		return fmt.Errorf("stats %+v", st)
	}
	return nil
}

// liveCopies is the store of an acceptor that missed its leases' ends:
// its copy of every lease says live, and not due for a long while.
type liveCopies struct{ *storage.Memory }

func (s liveCopies) Get(key string) (protocol.Register, error) {
	reg, err := s.Memory.Get(key)
	if err == nil && kv.IsLeaseKey(key) {
		reg.State = protocol.State{Version: 1, Value: kv.EncodeLease(kv.Lease{TTLMillis: kv.MaxLeaseTTL.Milliseconds(),
			RenewedMillis: time.Now().UnixMilli(), State: kv.LeaseLive})}
	}
	return reg, err
}

// TestSweepRechecksLiveCopies: a reaper whose local copies of two revoked
// leases still say live rechecks them in turn, RecheckPerSweep per sweep,
// and deletes their keys: one lease's at the first sweep, the other's at
// the second.
func TestSweepRechecksLiveCopies(t *testing.T) {
	c := nodetest.New(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	for id := uint64(1); id <= 2; id++ {
		for _, op := range []kv.Op{
			{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: time.Minute.Milliseconds()},
			{Kind: kv.OpPut, Key: fmt.Sprint("k", id), Lease: id},
			{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(id)},
		} {
			if _, err := c.Node(1).Do(ctx, op); err != nil {
				t.Fatal(err)
			}
		}
	}
	held(t, c.Stores[1], "k1", 1)
	held(t, c.Stores[1], "k2", 2)
	r, err := lease.New(lease.Config{RecheckPerSweep: 1}, liveCopies{c.Stores[1]}, c.Node(2), time.Now, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	exists := func(key string) bool {
		s, err := c.Node(3).Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return s.Exists()
	}
	r.Once()
	if exists("k1") || !exists("k2") {
		t.Fatalf("after one sweep: k1 %v, k2 %v; want only k2", exists("k1"), exists("k2"))
	}
	r.Once()
	if exists("k2") {
		t.Fatal("k2 is still there after the second sweep")
	}
}
