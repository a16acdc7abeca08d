package node_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/disktest"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// pebbleCluster runs three nodes over node.Local, each on a Pebble store in
// dir/nodeN, with space; stop stops the nodes and closes the stores.
func pebbleCluster(t *testing.T, dir string, space node.SpaceConfig) (nodes []*node.Node, stop func()) {
	t.Helper()
	ids := []protocol.NodeID{1, 2, 3}
	net := node.NewLocal()
	var stores []*storage.Pebble
	for _, id := range ids {
		st, err := storage.OpenPebble(filepath.Join(dir, fmt.Sprint("node", id)), storage.PebbleOptions{BallastBytes: 2 << 20})
		if err != nil {
			t.Fatal(err)
		}
		ep := net.Endpoint(id)
		cfg := nodetest.FastConfig(id, protocol.Majority(1, ids...))
		cfg.Proposer.AttemptTimeout = time.Second // Pebble syncs on tmpfs, under the race detector
		cfg.Space = space
		n, err := node.New(cfg, st, ep, ep, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := net.Add(n); err != nil {
			t.Fatal(err)
		}
		nodes, stores = append(nodes, n), append(stores, st)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		for i, n := range nodes {
			n.Stop()
			if err := stores[i].Close(); err != nil {
				t.Errorf("close store %d: %v", i+1, err)
			}
		}
	}
	t.Cleanup(stop)
	return nodes, stop
}

// On a small filesystem, writes are refused with kv.ErrNoSpace once less
// than MinFreeBytes is free, and nothing of them is applied; gets and
// deletes go on; the nodes restart on the filesystem filled to the last
// byte (the ballast makes room to open), still serve gets and deletes, and
// take writes again once space is freed. (The space here is freed by
// removing a file: whether deletion GC and Pebble's compactions give
// space back within a test's time is not something a test can count on;
// TestNodeRefusesWritesOverQuota shows deletes bringing a store back under
// its quota.)
func TestNodeRefusesWritesOnAFullDisk(t *testing.T) {
	mnt := disktest.MountTmpfs(t, 96<<20)
	space := node.SpaceConfig{CheckInterval: time.Nanosecond, MinFreeBytes: -1}
	nodes, stop := pebbleCluster(t, mnt, space)
	ctx := servertest.Ctx(t, 60*time.Second)
	value := make([]byte, 128<<10)
	// Three open stores take some room of their own once written to (WALs,
	// which Pebble preallocates in steps of megabytes, ballasts): a few
	// writes first, with no check, then the threshold is 24 MiB below what
	// is free.
	var keys []string
	for i := range 3 {
		k := fmt.Sprint("w", i)
		if _, err := nodes[i].Do(ctx, kv.Op{Kind: kv.OpPut, Key: k, Value: value}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		keys = append(keys, k)
	}
	space.MinFreeBytes = freeBytes(t, mnt) - 24<<20
	for _, n := range nodes {
		node.SetSpace(n, space)
	}
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatalf("200 puts of 128 KiB on three stores never left less than %d bytes free", space.MinFreeBytes)
		}
		k := fmt.Sprint("k", i)
		_, err := nodes[i%3].Do(ctx, kv.Op{Kind: kv.OpPut, Key: k, Value: value})
		if errors.Is(err, kv.ErrNoSpace) {
			t.Logf("no_space after %d puts: %v", i, err)
			break
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		keys = append(keys, k)
	}
	refused := func(when string) {
		t.Helper()
		for _, n := range nodes {
			if _, err := n.Do(ctx, kv.Op{Kind: kv.OpPut, Key: keys[0], Value: []byte("new")}); !errors.Is(err, kv.ErrNoSpace) {
				t.Fatalf("%s: put at node %d: %v, want kv.ErrNoSpace", when, n.ID(), err)
			}
		}
		if s, err := nodes[0].Do(ctx, kv.Op{Kind: kv.OpGet, Key: keys[0]}); err != nil || len(s.Value) != len(value) {
			t.Fatalf("%s: get: %d bytes, %v; want the value put first", when, len(s.Value), err)
		}
	}
	refused("disk nearly full")
	if _, err := nodes[1].Do(ctx, kv.Op{Kind: kv.OpDelete, Key: keys[1]}); err != nil {
		t.Fatalf("delete on a nearly full disk: %v", err)
	}

	stop()
	disktest.Fill(t, mnt)
	junk := filepath.Join(mnt, "junk")
	nodes, _ = pebbleCluster(t, mnt, space) // opens on a full disk
	// The opens gave up their ballasts to open, and Pebble then removes
	// obsolete files in the background: take that room again, up to 4 MiB
	// below the threshold (room for the delete below), until a put is
	// refused at every node (a put while there was room is no failure).
	var tops []string
	for attempt := 0; ; attempt++ {
		if free := freeBytes(t, mnt); free > space.MinFreeBytes-4<<20 {
			f := filepath.Join(mnt, fmt.Sprint("top", attempt))
			if err := os.WriteFile(f, make([]byte, free-space.MinFreeBytes+4<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			tops = append(tops, f)
		}
		all := true
		for _, n := range nodes {
			_, err := n.Do(ctx, kv.Op{Kind: kv.OpPut, Key: "probe", Value: []byte("x")})
			all = all && errors.Is(err, kv.ErrNoSpace)
		}
		if all {
			break
		}
		if attempt == 50 {
			t.Fatalf("after a restart on a full disk, a put is still taken with %d bytes free (threshold %d)", freeBytes(t, mnt), space.MinFreeBytes)
		}
		time.Sleep(20 * time.Millisecond) // Pebble's background deletions
	}
	refused("restarted on a full disk")
	if _, err := nodes[2].Do(ctx, kv.Op{Kind: kv.OpDelete, Key: keys[2]}); err != nil {
		t.Fatalf("delete after a restart on a full disk: %v", err)
	}
	for _, f := range append(tops, junk) {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := nodes[0].Do(ctx, kv.Op{Kind: kv.OpPut, Key: keys[0], Value: []byte("new")}); err != nil || string(s.Value) != "new" {
		t.Fatalf("put once space is freed: %v, %v", s, err)
	}
}

// freeBytes is what dir's filesystem has free for its user.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
