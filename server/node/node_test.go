package node_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

var members3 = []protocol.NodeID{1, 2, 3}

func TestHomeIsStableAndSpread(t *testing.T) {
	counts := map[protocol.NodeID]int{}
	const keys = 30000
	for i := range keys {
		k := fmt.Sprintf("key/%d", i)
		h := server.Home(k, members3)
		if got := server.Home(k, []protocol.NodeID{3, 1, 2}); got != h {
			t.Fatalf("home of %q depends on member order: %d vs %d", k, h, got)
		}
		// Removing a member moves only the keys it was home of.
		if h != 2 {
			if got := server.Home(k, []protocol.NodeID{1, 3}); got != h {
				t.Fatalf("removing node 2 moved %q from %d to %d", k, h, got)
			}
		}
		counts[h]++
	}
	for _, id := range members3 {
		if share := float64(counts[id]) / keys; share < 0.30 || share > 0.37 {
			t.Errorf("node %d is home of %.1f%% of the keys", id, 100*share)
		}
	}
	if server.Home("k", nil) != 0 {
		t.Error("a home among no members")
	}
}

func TestNodeForwardsToHome(t *testing.T) {
	c := nodetest.New(t, 3)
	key := nodetest.KeyHomedAt(t, 2, members3)
	ctx := servertest.Ctx(t, 10*time.Second)
	for i := range 3 {
		s, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: key, Delta: 1})
		if err != nil || string(s.Value) != fmt.Sprint(i+1) {
			t.Fatalf("increment %d: %v, %v", i, s, err)
		}
	}
	if s := c.Node(1).Stats(); s.Forwarded != 3 || s.Proposer.Requests != 0 {
		t.Fatalf("node 1 stats %+v: want 3 forwarded, none proposed", s)
	}
	if s := c.Node(2).Stats(); s.Proposer.Requests != 3 || s.Proposer.OneRoundTrip != 2 {
		t.Fatalf("home stats %+v: want 3 proposed, 2 in one round trip", s.Proposer)
	}
}

func TestNodeFallsBackWhenHomeIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		cut  func(c *nodetest.Cluster)
	}{
		{"home stopped", func(c *nodetest.Cluster) { c.Node(2).Stop() }},
		{"home cut off", func(c *nodetest.Cluster) {
			c.Net.SetHook(node.Hook{Down: func(from, to protocol.NodeID) bool { return from == 2 || to == 2 }})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := nodetest.New(t, 3)
			key := nodetest.KeyHomedAt(t, 2, members3)
			tt.cut(c)
			ctx := servertest.Ctx(t, 10*time.Second)
			for i := range 3 {
				s, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: key, Delta: 1})
				if err != nil || string(s.Value) != fmt.Sprint(i+1) {
					t.Fatalf("increment %d with node 2 unavailable: %v, %v", i, s, err)
				}
			}
			if s := c.Node(1).Stats(); s.Fallbacks != 3 || s.Proposer.Requests != 3 {
				t.Fatalf("node 1 stats %+v: want 3 fallbacks run locally", s)
			}
		})
	}
}

func TestNodeWithoutQuorum(t *testing.T) {
	c := nodetest.New(t, 3)
	c.Net.SetHook(node.Hook{Down: func(from, to protocol.NodeID) bool { return from != to }})
	key := nodetest.KeyHomedAt(t, 1, members3)
	_, err := c.Node(1).Do(servertest.Ctx(t, 100*time.Millisecond), kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("v")})
	if !errors.Is(err, kv.ErrNoQuorum) {
		t.Fatalf("Do without quorum: %v, want ErrNoQuorum", err)
	}
	c.Net.SetHook(node.Hook{})
	s, err := c.Node(1).Do(servertest.Ctx(t, 10*time.Second), kv.Op{Kind: kv.OpGet, Key: key})
	if err != nil || s.Exists() {
		t.Fatalf("after ErrNoQuorum the key holds %v (%v); nothing may have been applied", s, err)
	}
}

func TestNodeStopDrainsAndRefuses(t *testing.T) {
	c := nodetest.New(t, 3)
	n := c.Node(3)
	n.Stop()
	if _, err := n.Propose(servertest.Ctx(t, time.Second), server.Request{Op: kv.Op{Kind: kv.OpGet, Key: "k"}}); !errors.Is(err, server.ErrStopped) {
		t.Fatalf("Propose on a stopped node: %v", err)
	}
	// Its acceptor drops what arrives; the others still form a quorum.
	s, err := c.Node(1).Do(servertest.Ctx(t, 10*time.Second), kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("v")})
	if err != nil || s.Version == 0 {
		t.Fatalf("put with node 3 stopped: %v, %v", s, err)
	}
	if got := n.Stats().Acceptor.Batches; got != 0 {
		t.Fatalf("stopped acceptor processed %d batches", got)
	}
}

func TestSplitRequests(t *testing.T) {
	p := protocol.Message{Kind: protocol.MsgPrepare, Key: "a"}
	r := protocol.Message{Kind: protocol.MsgPromise, Key: "b"}
	tests := []struct {
		in            []protocol.Message
		reqs, replies []protocol.Message
	}{
		{[]protocol.Message{p, p}, []protocol.Message{p, p}, nil},
		{[]protocol.Message{r}, nil, []protocol.Message{r}},
		{[]protocol.Message{r, p, r}, []protocol.Message{p}, []protocol.Message{r, r}},
	}
	eq := func(a, b []protocol.Message) bool {
		return slices.EqualFunc(a, b, func(x, y protocol.Message) bool { return x.Kind == y.Kind && x.Key == y.Key })
	}
	for _, tt := range tests {
		reqs, replies := node.SplitRequests(tt.in)
		if !eq(reqs, tt.reqs) || !eq(replies, tt.replies) {
			t.Errorf("split %v: %v and %v", tt.in, reqs, replies)
		}
	}
}

func TestNodeReadsKeysHomedElsewhereItself(t *testing.T) {
	dropReadsFrom1To := func(to ...protocol.NodeID) node.Hook {
		return node.Hook{Filter: func(from, dst protocol.NodeID, msgs []protocol.Message) []protocol.Message {
			if from != 1 || !slices.Contains(to, dst) {
				return msgs
			}
			return slices.DeleteFunc(slices.Clone(msgs), func(m protocol.Message) bool { return m.Kind == protocol.MsgRead })
		}}
	}
	tests := []struct {
		name      string
		hook      node.Hook
		local     uint64 // reads node 1 answered itself
		forwarded uint64 // reads it forwarded to the home
	}{
		{"acceptors agree", node.Hook{}, 1, 0},
		{"one acceptor silent: the read asks the third", dropReadsFrom1To(3), 1, 0},
		{"no peer answers: the home reads", dropReadsFrom1To(2, 3), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := nodetest.New(t, 3)
			key := nodetest.KeyHomedAt(t, 2, members3)
			ctx := servertest.Ctx(t, 10*time.Second)
			if _, err := c.Node(2).Do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			// Every acceptor holds the put before the read starts.
			servertest.WaitFor(t, "the put on every acceptor", func() bool {
				for _, st := range c.Stores {
					if reg, err := st.Get(key); err != nil || string(reg.State.Value) != "v" {
						return false
					}
				}
				return true
			})
			c.Net.SetHook(tt.hook)
			s, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
			if err != nil || string(s.Value) != "v" {
				t.Fatalf("get: %v, %v", s, err)
			}
			st := c.Node(1).Stats()
			if st.LocalReads != tt.local || st.Forwarded != tt.forwarded {
				t.Fatalf("node 1: %d local reads, %d forwarded; want %d, %d", st.LocalReads, st.Forwarded, tt.local, tt.forwarded)
			}
			if st.Proposer.Requests != tt.local+tt.forwarded {
				t.Fatalf("node 1 proposer took %d requests, want %d (fast reads only)", st.Proposer.Requests, tt.local+tt.forwarded)
			}
		})
	}
}

func TestNodeProposesKeysOfFarHomesItself(t *testing.T) {
	acceptors := protocol.Majority(1, members3...)
	net := node.NewLocal()
	var nodes []*node.Node
	for _, id := range members3 {
		ep := net.Endpoint(id)
		var fwd server.Forwarder = ep
		if id == 1 {
			// node.Node 2 is in another region as node 1 measures it.
			fwd = distantForwarder{rtt: map[protocol.NodeID]time.Duration{2: 22 * time.Millisecond, 3: time.Millisecond}}
		}
		n, err := node.New(nodetest.FastConfig(id, acceptors), storage.NewMemory(), ep, fwd, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := net.Add(n); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Stop()
		}
	})
	key := nodetest.KeyHomedAt(t, 2, members3)
	ctx := servertest.Ctx(t, 10*time.Second)
	for i := range 3 {
		s, err := nodes[0].Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: key, Delta: 1})
		if err != nil || string(s.Value) != fmt.Sprint(i+1) {
			t.Fatalf("increment %d: %v, %v", i, s, err)
		}
	}
	if s := nodes[0].Stats(); s.FarHomes != 3 || s.Forwarded != 0 || s.Fallbacks != 0 || s.Proposer.Requests != 3 {
		t.Fatalf("node 1 stats %+v: want 3 requests proposed here for a far home, none forwarded", s)
	}
}
