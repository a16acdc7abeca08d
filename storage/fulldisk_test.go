package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/disktest"

	"github.com/caspaxos/caspaxos/protocol"
)

// openWithin opens a store, failing the test if it takes longer than d
// (Pebble waits forever for a flush that fails for lack of space).
func openWithin(t *testing.T, d time.Duration, dir string, opts PebbleOptions) *Pebble {
	t.Helper()
	type result struct {
		s   *Pebble
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := OpenPebble(dir, opts)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("open %s: %v", dir, r.err)
		}
		return r.s
	case <-time.After(d):
		t.Fatalf("open %s: still not open after %v (Pebble waits for a flush the full disk fails)", dir, d)
		return nil
	}
}

// A store whose disk filled up while it was down opens again: the open
// frees the ballast, Pebble flushes what its WAL held, the registers read
// back and a write (a delete's tombstone) still fits. Once space is freed,
// the next open writes the ballast again.
func TestPebbleOpensOnAFullDisk(t *testing.T) {
	mnt := disktest.MountTmpfs(t, 32<<20)
	dir := filepath.Join(mnt, "data")
	opts := PebbleOptions{BallastBytes: 4 << 20}
	s := openWithin(t, 30*time.Second, dir, opts)
	ballast := filepath.Join(dir, ballastFileName)
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast after the first open: %v", err)
	}
	sp, err := s.Space()
	if err != nil || !sp.FSKnown || sp.TotalBytes != 32<<20 || sp.AvailBytes > 28<<20 || sp.StoreBytes == 0 {
		t.Fatalf("Space() = %+v, %v: want the 32 MiB tmpfs, less the 4 MiB ballast, and the store's files", sp, err)
	}
	reg := func(i int) protocol.Register {
		return protocol.Register{Accepted: protocol.Ballot{Counter: 1, Proposer: 1}, State: protocol.State{Value: make([]byte, 1000), Version: uint64(i + 1)}}
	}
	for i := range 200 { // in the WAL and the memtable, not yet in a table
		if err := s.Apply([]Entry{{Key: fmt.Sprint("k", i), Register: reg(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	disktest.Fill(t, mnt)

	s = openWithin(t, 30*time.Second, dir, opts)
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there after an open on a full disk: %v", err)
	}
	if r, err := s.Get("k7"); err != nil || r.State.Version != 8 {
		t.Fatalf("get after opening on a full disk: %v, %v", r, err)
	}
	tomb := protocol.Register{Accepted: protocol.Ballot{Counter: 2, Proposer: 1}, State: protocol.State{Deleted: true, Version: 9}}
	if err := s.Apply([]Entry{{Key: "k7", Register: tomb}}); err != nil {
		t.Fatalf("a delete's write on the freed room: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "junk")); err != nil {
		t.Fatal(err)
	}
	s = openWithin(t, 30*time.Second, dir, opts)
	defer s.Close()
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast after an open with room again: %v", err)
	}
}
