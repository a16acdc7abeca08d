package gc_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// startRunner starts node 1's GC runner over the cluster's in-process
// network, with short waits and no sweeps (the test enqueues what it
// deletes, as the proposer's Deleted hook would).
func startRunner(t *testing.T, c *nodetest.Cluster, ids []protocol.NodeID) *gc.Runner {
	t.Helper()
	r, err := gc.New(gc.Config{ID: 1, Delay: time.Microsecond, RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		RoundTimeout: time.Second, SweepInterval: -1}, c.Stores[0], c.Node(1), node.NewLocalGC(c.Net, 1, ids), servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// gone reports whether no store holds a register for key.
func gone(c *nodetest.Cluster, key string) bool {
	for _, st := range c.Stores {
		if reg, _ := st.Get(key); !reg.Equal(protocol.Register{}) {
			return false
		}
	}
	return true
}

// A deleted key leaves every acceptor's store once the runner's round
// reached every node; while one node cannot be reached, the round fails,
// nothing is removed anywhere, and the key stays queued until it can.
func TestRunnerCollectsOnlyWithEveryNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  bool // the link from node 1 to node 3 is down at first
	}{
		{"every node reachable", false},
		{"one node cut off, then back", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nodetest.New(t, 3)
			ids := []protocol.NodeID{1, 2, 3}
			ctx := servertest.Ctx(t, 20*time.Second)
			if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			s, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpDelete, Key: "k"})
			if err != nil {
				t.Fatal(err)
			}
			// Every acceptor holds the tombstone before the runner starts
			// (the delete needed only a quorum of them).
			servertest.WaitFor(t, "the tombstone on every acceptor", func() bool {
				for _, st := range c.Stores {
					if reg, _ := st.Get("k"); !reg.State.Deleted {
						return false
					}
				}
				return true
			})
			if tc.cut {
				c.Net.SetHook(node.Hook{Down: func(from, to protocol.NodeID) bool { return from == 1 && to == 3 }})
			}
			r := startRunner(t, c, ids)
			r.Enqueue("k", s.Version)
			if tc.cut {
				servertest.WaitFor(t, "a failed round", func() bool { return r.Stats().Failed > 0 })
				if reg, _ := c.Stores[2].Get("k"); reg.Equal(protocol.Register{}) {
					t.Fatal("node 3, cut off, lost its register")
				}
				if n, err := r.Queued(10); err != nil || n != 1 {
					t.Fatalf("queued %d (%v) after a failed round, want the key still queued", n, err)
				}
				c.Net.SetHook(node.Hook{})
			}
			servertest.WaitFor(t, "the key removed from every store", func() bool { return gone(c, "k") })
			servertest.WaitFor(t, "the queue emptied", func() bool {
				n, err := r.Queued(10)
				return err == nil && n == 0
			})
		})
	}
}

// A key written again after its delete is not collected: the round finds
// it live and leaves its value on every node.
func TestRunnerLeavesLiveKeys(t *testing.T) {
	c := nodetest.New(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpDelete, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(2).Do(ctx, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, c, []protocol.NodeID{1, 2, 3})
	r.Enqueue("k", d.Version)
	servertest.WaitFor(t, "the item finished", func() bool { return r.Stats().Collected == 1 })
	got, err := c.Node(3).Do(ctx, kv.Op{Kind: kv.OpGet, Key: "k"})
	if err != nil || string(got.Value) != "b" {
		t.Fatalf("after GC the key reads %v, %v; want b", got, err)
	}
}

// A tombstone whose request table may still be retried against is held:
// the round keeps it on every acceptor, a retry of its delete is answered
// with the first outcome, and once its IDs are older than the window (and
// twice the skew) it is collected.
func TestRunnerHoldsTombstoneWithRequestIDs(t *testing.T) {
	c := nodetest.New(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	id, err := kv.NewRequestID(time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	del := kv.Op{Kind: kv.OpDelete, Key: "k", RequestID: id}
	start := time.Now()
	d, err := c.Node(1).Do(ctx, del)
	if err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the tombstone on every acceptor", func() bool {
		for _, st := range c.Stores {
			if reg, _ := st.Get("k"); !reg.State.Deleted {
				return false
			}
		}
		return true
	})
	const window = time.Second
	r, err := gc.New(gc.Config{ID: 1, Delay: time.Microsecond, RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		RoundTimeout: time.Second, SweepInterval: -1, Idempotency: kv.Idempotency{Window: window}},
		c.Stores[0], c.Node(1), node.NewLocalGC(c.Net, 1, []protocol.NodeID{1, 2, 3}), servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	r.Enqueue("k", d.Version)
	servertest.WaitFor(t, "a round that held the tombstone", func() bool { return r.Stats().Held > 0 })
	if gone(c, "k") && time.Since(start) < window {
		t.Fatal("the tombstone was removed while its request ID was live")
	}
	if again, err := c.Node(2).Do(ctx, del); err != nil || !again.Deleted || again.Version != d.Version {
		t.Fatalf("the delete repeated: %v, %v; want its first outcome, the tombstone at v%d", again, err, d.Version)
	}
	servertest.WaitFor(t, "the key removed from every store", func() bool { return gone(c, "k") })
}
