package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/lease"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// TestReaperExpiresOnlyUnrenewedLeases: a lease granted through node 1
// and kept alive is never expired by a reaper proposing through node 3
// (no node owns it); once its keep-alives stop, the reaper expires it, and
// not before its TTL has passed since the last keep-alive was sent.
func TestReaperExpiresOnlyUnrenewedLeases(t *testing.T) {
	c := nodetest.New(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	key := kv.LeaseKey(7)
	const ttl = kv.MinLeaseTTL
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpLeaseGrant, Key: key, Delta: ttl.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(2).Do(ctx, kv.Op{Kind: kv.OpLeaseGrant, Key: key, Delta: ttl.Milliseconds()}); !errors.Is(err, kv.ErrLeaseExists) {
		t.Fatalf("a second grant: %v", err)
	}
	// The reaper's filter assumes no skew, so it proposes often; the
	// committed change decides with the proposer's bound.
	r, err := lease.New(lease.Config{MaxClockSkew: time.Millisecond}, c.Stores[0], c.Node(3), time.Now, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	state := func() kv.Lease {
		s, err := c.Node(2).Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		l, err := kv.LeaseOf(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var lastSend time.Time
	for range 10 {
		lastSend = time.Now()
		if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpLeaseKeepAlive, Key: key}); err != nil {
			t.Fatalf("keep-alive: %v", err)
		}
		r.Once()
		if l := state(); l.State != kv.LeaseLive {
			t.Fatalf("a lease kept alive is %v", l.State)
		}
		servertest.WaitFor(t, "a fifth of the TTL", func() bool { return time.Since(lastSend) >= ttl/5 })
	}
	servertest.WaitFor(t, "the lease expired", func() bool {
		r.Once()
		return state().State == kv.LeaseExpired
	})
	if since := time.Since(lastSend); since < ttl {
		t.Fatalf("the lease expired %v after its last keep-alive was sent, under its TTL %v", since, ttl)
	}
	if st := r.Stats(); st.Expired != 1 || st.Proposed < 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpLeaseKeepAlive, Key: key}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
}
