package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
)

// fastGC makes a node's GC act within milliseconds and sweep often.
func fastGC(c *Config) {
	c.GC = GCOptions{Delay: 10 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		SweepInterval: 100 * time.Millisecond, OrphanDelay: 100 * time.Millisecond}
}

// waitGCDone waits until d's GC queue is empty and a sweep begun after the
// call found no tombstone in its store.
func waitGCDone(t *testing.T, name string, d *Daemon) {
	t.Helper()
	gc := d.gc.Load()
	from := gc.Stats().Sweeps
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := gc.Stats()
		n, err := gc.Queued(1 << 10)
		if err == nil && n == 0 && s.Sweeps >= from+2 && s.Tombstones == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GC not done: %+v, queued %d %v", name, s, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGCFollowsMembership deletes keys on three nodes, then on four after
// adding one over the network: every node's GC (over the GC service)
// collects every tombstone, on the new node too, and no deleted key is
// found again.
func TestGCFollowsMembership(t *testing.T) {
	c := newTestCluster(t, 3, fastGC)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	cl := c.client(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for i := range 60 {
		if _, err := cl.Put(ctx, fmt.Sprint("key-", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		if _, err := cl.Delete(ctx, fmt.Sprint("key-", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range c.daemons {
		waitGCDone(t, c.cfgs[i].Name, d)
	}

	addrs := freeAddrs(t, 2)
	c.cfgs = append(c.cfgs, Config{Name: "n4", DataDir: t.TempDir(), ClientAddr: addrs[0], PeerAddr: addrs[1], Join: true,
		RequestTimeout: 2 * time.Second, DeadAfter: 2 * time.Second})
	fastGC(&c.cfgs[3])
	c.daemons = append(c.daemons, nil)
	c.start(t, 3)
	if err := c.daemons[0].AddMember(ctx, "n4", addrs[1]); err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 60; i++ {
		if _, err := cl.Delete(ctx, fmt.Sprint("key-", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	var collected uint64
	for i, d := range c.daemons {
		waitGCDone(t, c.cfgs[i].Name, d)
		collected += d.gc.Load().Stats().Collected
	}
	if collected < 60 {
		t.Fatalf("GC finished %d keys, want at least the 60 deleted", collected)
	}
	for i := range 60 {
		if v, err := cl.Get(ctx, fmt.Sprint("key-", i)); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get key-%d after its delete and GC: %q, %v; want not found", i, v.Data, err)
		}
	}
}
