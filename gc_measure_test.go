package caspaxos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMeasureGC is the deletion GC measurement of issue 5, not a timed
// test: it runs only when CASPAXOS_GC_MEASURE is set to the number of keys
// (e.g. 1000000). It writes and deletes that many keys in a three-node
// Pebble store with GC off, reopens it with GC on, and reports the
// registers on disk before and after and how long GC took:
//
//	CASPAXOS_GC_MEASURE=1000000 go test -run TestMeasureGC -v -timeout 2h .
//
// CASPAXOS_GC_DIR keeps the data in that directory instead of a temporary one.
func TestMeasureGC(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CASPAXOS_GC_MEASURE"))
	if n <= 0 {
		t.Skip("set CASPAXOS_GC_MEASURE to the number of keys to measure deletion GC")
	}
	dir := os.Getenv("CASPAXOS_GC_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(Options{Dir: dir, GC: GCOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	putAndDelete(t, s, n)
	t.Logf("put and deleted %d keys in %v", n, time.Since(start).Round(time.Millisecond))
	all, dead := registers(t, s.stores)
	t.Logf("before GC: registers per node %v, of which without a value %v", all, dead)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	poll := time.Duration(max(1, n/200000)) * time.Second // a count scans every register
	for {
		time.Sleep(poll)
		all, dead = registers(t, s.stores)
		t.Logf("after %v: registers per node %v; GC %+v", time.Since(start).Round(time.Second), all, s.GCStats())
		if all[0]+all[1]+all[2] == 0 && queued(t, s) == 0 {
			break
		}
	}
	t.Logf("GC of %d deleted keys took %v (from Open, sweep included); registers left per node %v", n, time.Since(start).Round(time.Millisecond), all)
}

// putAndDelete writes then deletes keys 0..n-1 from 256 goroutines.
func putAndDelete(t *testing.T, s *Store, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				k := fmt.Sprintf("key/%09d", i)
				if _, err := s.Put(ctx, k, []byte("value")); err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
				if err := s.Delete(ctx, k); err != nil {
					errs <- fmt.Errorf("delete %s: %w", k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
