package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/caspaxos/caspaxos/kv"
	"math"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/transport"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// fastGC makes a node's GC act within milliseconds and sweep often, and
// keeps a tombstone that holds request IDs (the Go client's deletes carry
// one) for a second only.
func fastGC(c *Config) {
	c.GC = GCOptions{Delay: 10 * time.Millisecond, RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		SweepInterval: 100 * time.Millisecond, OrphanDelay: 100 * time.Millisecond}
	c.Idempotency = kv.Idempotency{Window: time.Second}
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
		RequestTimeout: 2 * time.Second, Transport: transport.Config{DeadAfter: 2 * time.Second}})
	fastGC(&c.cfgs[3])
	c.daemons = append(c.daemons, nil)
	c.start(t, 3)
	if err := c.daemons[0].AddMember(ctx, "n4", addrs[1]); err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 60; i++ {
		// Right after the change a node may not reach a quorum for a
		// moment (a loaded machine): no_quorum applied nothing, so the
		// delete is sent again.
		for {
			_, err := cl.Delete(ctx, fmt.Sprint("key-", i), 0)
			if err == nil {
				break
			}
			if !errors.Is(err, client.ErrNoQuorum) || ctx.Err() != nil {
				t.Fatal(err)
			}
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

// A GC.Fence call with age 2^64-1 is refused as an invalid argument and
// changes nothing; one above the proposers' ages but within the bound is
// taken, and the proposers learn it: writes work, restarts included.
func TestHugeFenceOverGRPC(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fence := func(age uint64) []error {
		var errs []error
		for _, cfg := range c.cfgs {
			conn, err := grpc.NewClient(cfg.PeerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ages := map[uint64]uint64{}
			for _, d := range c.daemons {
				ages[uint64(d.id)] = age
			}
			_, err = peerpb.NewGCClient(conn).Fence(ctx, &peerpb.FenceRequest{Ages: ages})
			conn.Close()
			errs = append(errs, err)
		}
		return errs
	}
	for _, err := range fence(math.MaxUint64) {
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GC.Fence with age 2^64-1: %v, want InvalidArgument", err)
		}
	}
	for _, err := range fence(1000) {
		if err != nil {
			t.Fatalf("GC.Fence with age 1000: %v", err)
		}
	}
	write := func(round string) {
		t.Helper()
		for i := range c.cfgs {
			if _, err := c.client(t, i).Put(ctx, fmt.Sprint("key-", i), []byte(round)); err != nil {
				t.Fatalf("%s: write through %s: %v", round, c.cfgs[i].Name, err)
			}
		}
	}
	write("fenced")
	for i := range c.daemons {
		c.stop(i)
	}
	for i := range c.daemons {
		c.start(t, i)
	}
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	write("restarted")
}
