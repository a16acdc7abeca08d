package node_test

import (
	"errors"
	"fmt"
	"strings"
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

func TestSpaceErr(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name   string
		sp     storage.Space
		cfg    node.SpaceConfig
		refuse string // "" or a part of the reason
	}{
		{"room", storage.Space{StoreBytes: 10 * mib, AvailBytes: 300 * mib, FSKnown: true}, node.SpaceConfig{MinFreeBytes: 256 * mib}, ""},
		{"low disk", storage.Space{StoreBytes: 10 * mib, AvailBytes: 255 * mib, FSKnown: true}, node.SpaceConfig{MinFreeBytes: 256 * mib}, "bytes free"},
		{"disk unknown", storage.Space{StoreBytes: 10 * mib}, node.SpaceConfig{MinFreeBytes: 256 * mib}, ""},
		{"disk check off", storage.Space{AvailBytes: 0, FSKnown: true}, node.SpaceConfig{MinFreeBytes: -1}, ""},
		{"under quota", storage.Space{StoreBytes: mib - 1}, node.SpaceConfig{QuotaBytes: mib}, ""},
		{"at quota", storage.Space{StoreBytes: mib}, node.SpaceConfig{QuotaBytes: mib}, "quota"},
		{"no quota", storage.Space{StoreBytes: 1 << 40}, node.SpaceConfig{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := node.SpaceErr(tt.sp, tt.cfg)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, kv.ErrNoSpace) || !strings.Contains(err.Error(), tt.refuse) {
				t.Fatalf("got %v, want kv.ErrNoSpace saying %q", err, tt.refuse)
			}
		})
	}
}

func TestRefusesWhenFull(t *testing.T) {
	tests := []struct {
		req  server.Request
		want bool
	}{
		{server.Request{Op: kv.Op{Kind: kv.OpGet}}, false},
		{server.Request{Op: kv.Op{Kind: kv.OpDelete}}, false},
		{server.Request{Op: kv.Op{Kind: kv.OpPut}}, true},
		{server.Request{Op: kv.Op{Kind: kv.OpCreate}}, true},
		{server.Request{Op: kv.Op{Kind: kv.OpCompareAndSwap}}, true},
		{server.Request{Op: kv.Op{Kind: kv.OpIncrement}}, true},
		{server.Request{Change: kv.Put(nil)}, true},
	}
	for _, tt := range tests {
		if got := node.RefusesWhenFull(tt.req); got != tt.want {
			t.Errorf("node.RefusesWhenFull(%v, change %v) = %v, want %v", tt.req.Op.Kind, tt.req.Change != nil, got, tt.want)
		}
	}
}

// newQuotaCluster is nodetest.New with each node's node.SpaceConfig.
func newQuotaCluster(t *testing.T, space ...node.SpaceConfig) *nodetest.Cluster {
	t.Helper()
	ids := make([]protocol.NodeID, len(space))
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	c := &nodetest.Cluster{Net: node.NewLocal()}
	for i, id := range ids {
		st := storage.NewMemory()
		ep := c.Net.Endpoint(id)
		cfg := nodetest.FastConfig(id, protocol.Majority(1, ids...))
		cfg.Space = space[i]
		n, err := node.New(cfg, st, ep, ep, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Net.Add(n); err != nil {
			t.Fatal(err)
		}
		c.Nodes, c.Stores = append(c.Nodes, n), append(c.Stores, st)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Stop()
		}
	})
	return c
}

// A node over its quota refuses puts, creates, compare-and-swaps and
// increments with kv.ErrNoSpace before proposing anything, whether they
// enter there or are forwarded to it; gets and deletes still run, and
// deletes bring the store back under its quota.
func TestNodeRefusesWritesOverQuota(t *testing.T) {
	const quota = 2000
	every := time.Nanosecond // read the store's size at every write
	c := newQuotaCluster(t, node.SpaceConfig{QuotaBytes: quota, CheckInterval: every},
		node.SpaceConfig{QuotaBytes: quota, CheckInterval: every}, node.SpaceConfig{QuotaBytes: quota, CheckInterval: every})
	ctx := servertest.Ctx(t, 20*time.Second)
	n1 := c.Node(1)
	value := make([]byte, 100)
	var keys []string
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 puts of 100 bytes never met a quota of 2000 bytes")
		}
		k := nodetest.KeyHomedAt(t, 1, members3) + fmt.Sprint("/", i)
		_, err := n1.Do(ctx, kv.Op{Kind: kv.OpPut, Key: k, Value: value})
		if sp, _ := c.Stores[0].Space(); errors.Is(err, kv.ErrNoSpace) && sp.StoreBytes >= quota {
			// node.Node 1's own store is over (a refusal may also come from
			// another node's: node 1's acceptor may miss a write that
			// the two others took).
			break
		}
		if errors.Is(err, kv.ErrNoSpace) {
			continue
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		keys = append(keys, k)
	}
	before := n1.Stats().Proposer.Requests
	for _, op := range []kv.Op{
		{Kind: kv.OpPut, Key: keys[0], Value: []byte("x")},
		{Kind: kv.OpCreate, Key: "new", Value: []byte("x")},
		{Kind: kv.OpCompareAndSwap, Key: keys[0], Version: 1, Value: []byte("x")},
		{Kind: kv.OpIncrement, Key: "counter", Delta: 1},
	} {
		if _, err := n1.Do(ctx, op); !errors.Is(err, kv.ErrNoSpace) {
			t.Fatalf("%v over quota: %v, want kv.ErrNoSpace", op.Kind, err)
		}
	}
	if got := n1.Stats().Proposer.Requests; got != before {
		t.Fatalf("refused writes reached the proposer: %d requests, had %d", got, before)
	}
	// A write refused at its home after a forward: TestNodeRefusesWritesAtAFullHome.
	s, err := n1.Do(ctx, kv.Op{Kind: kv.OpGet, Key: keys[0]})
	if err != nil || s.Version != 1 || len(s.Value) != len(value) {
		t.Fatalf("get over quota: %v %v, want the first put unchanged", s, err)
	}
	for _, k := range keys {
		if _, err := n1.Do(ctx, kv.Op{Kind: kv.OpDelete, Key: k}); err != nil {
			t.Fatalf("delete %s over quota: %v", k, err)
		}
	}
	if _, err := n1.Do(ctx, kv.Op{Kind: kv.OpPut, Key: keys[0], Value: value}); err != nil {
		t.Fatalf("put after the deletes: %v", err)
	}
}

// A write forwarded to a home over its quota is refused there, though
// the node it entered has room.
func TestNodeRefusesWritesAtAFullHome(t *testing.T) {
	every := time.Nanosecond
	c := newQuotaCluster(t, node.SpaceConfig{CheckInterval: every}, node.SpaceConfig{QuotaBytes: 1, CheckInterval: every}, node.SpaceConfig{CheckInterval: every})
	ctx := servertest.Ctx(t, 20*time.Second)
	// node.Node 2's store holds nothing yet: one write fills it past 1 byte.
	k2 := nodetest.KeyHomedAt(t, 2, members3)
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: k2, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "node 2 to hold the key", func() bool { r, _ := c.Stores[1].Get(k2); return r.State.Version == 1 })
	if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: k2, Delta: 1}); !errors.Is(err, kv.ErrNoSpace) {
		t.Fatalf("increment forwarded to a full home: %v, want kv.ErrNoSpace", err)
	}
	if s := c.Node(1).Stats(); s.Proposer.Requests != 0 {
		t.Fatalf("node 1 proposed %d requests itself, want 0 (the home refused)", s.Proposer.Requests)
	}
}
