package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func TestSpaceErr(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name   string
		sp     storage.Space
		cfg    SpaceConfig
		refuse string // "" or a part of the reason
	}{
		{"room", storage.Space{StoreBytes: 10 * mib, AvailBytes: 300 * mib, FSKnown: true}, SpaceConfig{MinFreeBytes: 256 * mib}, ""},
		{"low disk", storage.Space{StoreBytes: 10 * mib, AvailBytes: 255 * mib, FSKnown: true}, SpaceConfig{MinFreeBytes: 256 * mib}, "bytes free"},
		{"disk unknown", storage.Space{StoreBytes: 10 * mib}, SpaceConfig{MinFreeBytes: 256 * mib}, ""},
		{"disk check off", storage.Space{AvailBytes: 0, FSKnown: true}, SpaceConfig{MinFreeBytes: -1}, ""},
		{"under quota", storage.Space{StoreBytes: mib - 1}, SpaceConfig{QuotaBytes: mib}, ""},
		{"at quota", storage.Space{StoreBytes: mib}, SpaceConfig{QuotaBytes: mib}, "quota"},
		{"no quota", storage.Space{StoreBytes: 1 << 40}, SpaceConfig{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := spaceErr(tt.sp, tt.cfg)
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
		req  Request
		want bool
	}{
		{Request{Op: kv.Op{Kind: kv.OpGet}}, false},
		{Request{Op: kv.Op{Kind: kv.OpDelete}}, false},
		{Request{Op: kv.Op{Kind: kv.OpPut}}, true},
		{Request{Op: kv.Op{Kind: kv.OpCreate}}, true},
		{Request{Op: kv.Op{Kind: kv.OpCompareAndSwap}}, true},
		{Request{Op: kv.Op{Kind: kv.OpIncrement}}, true},
		{Request{Change: kv.Put(nil)}, true},
	}
	for _, tt := range tests {
		if got := refusesWhenFull(tt.req); got != tt.want {
			t.Errorf("refusesWhenFull(%v, change %v) = %v, want %v", tt.req.Op.Kind, tt.req.Change != nil, got, tt.want)
		}
	}
}

// newQuotaCluster is newTestCluster with each node's SpaceConfig.
func newQuotaCluster(t *testing.T, space ...SpaceConfig) *testCluster {
	t.Helper()
	ids := make([]protocol.NodeID, len(space))
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	c := &testCluster{net: NewLocal()}
	for i, id := range ids {
		st := storage.NewMemory()
		ep := c.net.Endpoint(id)
		cfg := fastConfig(id, protocol.Majority(1, ids...))
		cfg.Space = space[i]
		node, err := NewNode(cfg, st, ep, ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.net.Add(node); err != nil {
			t.Fatal(err)
		}
		c.nodes, c.stores = append(c.nodes, node), append(c.stores, st)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
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
	c := newQuotaCluster(t, SpaceConfig{QuotaBytes: quota, CheckInterval: every},
		SpaceConfig{QuotaBytes: quota, CheckInterval: every}, SpaceConfig{QuotaBytes: quota, CheckInterval: every})
	ctx := ctxTimeout(t, 20*time.Second)
	n1 := c.node(1)
	value := make([]byte, 100)
	var keys []string
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 puts of 100 bytes never met a quota of 2000 bytes")
		}
		k := keyHomedAt(t, 1, members3) + fmt.Sprint("/", i)
		_, err := n1.Do(ctx, kv.Op{Kind: kv.OpPut, Key: k, Value: value})
		if sp, _ := c.stores[0].Space(); errors.Is(err, kv.ErrNoSpace) && sp.StoreBytes >= quota {
			// Node 1's own store is over (a refusal may also come from
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
	c := newQuotaCluster(t, SpaceConfig{CheckInterval: every}, SpaceConfig{QuotaBytes: 1, CheckInterval: every}, SpaceConfig{CheckInterval: every})
	ctx := ctxTimeout(t, 20*time.Second)
	// Node 2's store holds nothing yet: one write fills it past 1 byte.
	k2 := keyHomedAt(t, 2, members3)
	if _, err := c.node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: k2, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 2 to hold the key", func() bool { r, _ := c.stores[1].Get(k2); return r.State.Version == 1 })
	if _, err := c.node(1).Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: k2, Delta: 1}); !errors.Is(err, kv.ErrNoSpace) {
		t.Fatalf("increment forwarded to a full home: %v, want kv.ErrNoSpace", err)
	}
	if s := c.node(1).Stats(); s.Proposer.Requests != 0 {
		t.Fatalf("node 1 proposed %d requests itself, want 0 (the home refused)", s.Proposer.Requests)
	}
}
