package membership

import (
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// A node added after deletion GC removed a key never re-creates it below
// the removed tombstone's version. GC fast-forwarded every member's
// proposer past the tombstone (PROTOCOL.md §9 step 2); the joining
// proposer takes their counter with the fences (Fences.Counter). Before it
// did, it started from counter 0, nothing refused its low ballot on the
// removed register, and the key came back at version 1 (found by the chaos
// harness, seed 10018).
func TestJoinerNeverGoesBelowACollectedVersion(t *testing.T) {
	c := newMemberCluster(t, 3)
	ctx := servertest.Ctx(t, 20*time.Second)
	n1 := c.nodes[1]
	for i := range 20 {
		if _, err := n1.Do(ctx, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	tomb, err := n1.Do(ctx, kv.Op{Kind: kv.OpDelete, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the tombstone on every acceptor", func() bool {
		for _, st := range c.stores {
			if reg, _ := st.Get("k"); !reg.State.Deleted {
				return false
			}
		}
		return true
	})
	r, err := gc.New(gc.Config{ID: 1, Delay: time.Microsecond, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		RoundTimeout: time.Second, SweepInterval: -1}, c.stores[1], n1, node.NewLocalGC(c.net, 1, []protocol.NodeID{1, 2, 3}), servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	r.Enqueue("k", tomb.Version)
	servertest.WaitFor(t, "the key removed from every store", func() bool {
		for _, st := range c.stores {
			if reg, _ := st.Get("k"); !reg.Equal(protocol.Register{}) {
				return false
			}
		}
		return true
	})
	r.Stop()

	ctl := c.controller(1, &localMembers{c: c}, &memChanges{})
	c.start(4, NodeState{})
	done, err := ctl.Add(Member{Name: "n4", ID: 4, PeerAddr: "addr-4"})
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, done, ctl)
	// The joined node's own proposer re-creates the key.
	s, err := c.nodes[4].Propose(ctx, server.Request{Op: kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("again")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Version <= tomb.Version {
		t.Fatalf("re-created at version %d by the joined node, at or below the collected tombstone's %d", s.Version, tomb.Version)
	}
}
