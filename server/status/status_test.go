package status

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/storage"
)

func TestP99(t *testing.T) {
	b := storage.SyncBucketBound
	for _, tc := range []struct {
		name string
		h    map[int]uint64
		want time.Duration
	}{
		{"empty", nil, 0},
		{"one bucket", map[int]uint64{3: 10}, b(3)},
		{"tail of 1% stays out", map[int]uint64{0: 99, 9: 1}, b(0)},
		{"tail of 2% counts", map[int]uint64{0: 98, 9: 2}, b(9)},
		{"in the open bucket", map[int]uint64{storage.SyncBuckets - 1: 5}, 2 * b(storage.SyncBuckets-2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h [storage.SyncBuckets]uint64
			for i, c := range tc.h {
				h[i] = c
			}
			if got := P99(h); got != tc.want {
				t.Fatalf("P99 = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeNode is the Sources of a node whose counters the test sets.
type fakeNode struct {
	requests uint64
	syncs    [storage.SyncBuckets]uint64
	health   error
	countErr error
}

func (f *fakeNode) sources(dir string) Sources {
	return Sources{
		Name: "n2", ID: 2, DataDir: dir,
		Health: func(context.Context) error { return f.health },
		Members: func(context.Context) (uint64, []Member, error) {
			return 7, []Member{{Name: "n3", ID: 3}, {Name: "n1", ID: 1, Reachable: true}, {Name: "n2", ID: 2}}, nil
		},
		RTT:      func() map[uint64]time.Duration { return map[uint64]time.Duration{1: 3 * time.Millisecond} },
		Store:    func() (uint64, uint64) { return 100, 200 },
		WALSyncs: func() [storage.SyncBuckets]uint64 { return f.syncs },
		GC:       func() (int, bool) { return 2, true },
		Count:    func() (uint64, uint64, error) { return 50, 4, f.countErr },
		Requests: func() uint64 { return f.requests },
	}
}

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b"), make([]byte, 24), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{}
	s := NewSampler(Config{Every: time.Second, Window: 3 * time.Second}, f.sources(dir))
	t0 := time.Now()
	// Samples at t0..t0+5s: 100 requests a second, then 1000 a second
	// over the last three; the window (3s) sees only the latter.
	for i := range 6 {
		if i > 0 {
			if i <= 2 {
				f.requests += 100
			} else {
				f.requests += 1000
			}
			f.syncs[2] += 10
		}
		s.record(t0.Add(time.Duration(i) * time.Second))
	}
	if n := s.Collect(context.Background()); n.CountedAgoSeconds != -1 || n.Registers != 0 {
		t.Fatalf("before a count: %v registers counted %vs ago", n.Registers, n.CountedAgoSeconds)
	}
	s.recount(time.Now())
	f.countErr = errors.New("disk on fire")
	s.recount(time.Now()) // a failed count keeps the last one
	n := s.Collect(context.Background())
	if n.RequestsPerSecond != 1000 || n.WindowSeconds != 3 || n.RequestsTotal != 3200 {
		t.Fatalf("rate %v over %vs (total %d), want 1000 over 3s (3200)", n.RequestsPerSecond, n.WindowSeconds, n.RequestsTotal)
	}
	if n.WALFsyncP99Seconds != storage.SyncBucketBound(2).Seconds() {
		t.Fatalf("p99 %v", n.WALFsyncP99Seconds)
	}
	if n.DataDirBytes != 1024 || n.StoreBytes != 100 || n.DiskFreeBytes != 200 || !n.GC || n.Registers != 50 || n.Tombstones != 4 || n.GCQueued != 2 {
		t.Fatalf("sizes and GC: %+v", n)
	}
	if !n.Quorum || n.ConfigVersion != 7 || len(n.Peers) != 3 {
		t.Fatalf("quorum and members: %+v", n)
	}
	want := []Peer{{Name: "n1", ID: 1, Reachable: true, RTTSeconds: 0.003}, {Name: "n2", ID: 2, Self: true, Reachable: true}, {Name: "n3", ID: 3}}
	for i, p := range n.Peers {
		if p != want[i] {
			t.Fatalf("peer %d: %+v, want %+v", i, p, want[i])
		}
	}
	f.health = errors.New("reaches 1 of 3 acceptors")
	if n := s.Collect(context.Background()); n.Quorum || n.QuorumError != "reaches 1 of 3 acceptors" {
		t.Fatalf("without quorum: %v %q", n.Quorum, n.QuorumError)
	}
}

// Before two samples exist the rates are since the start.
func TestCollectBeforeAWindow(t *testing.T) {
	f := &fakeNode{requests: 40}
	f.syncs[5] = 3
	s := NewSampler(Config{}, f.sources(t.TempDir()))
	n := s.Collect(context.Background())
	if n.RequestsPerSecond <= 0 || n.WALFsyncP99Seconds != storage.SyncBucketBound(5).Seconds() {
		t.Fatalf("rate %v, p99 %v", n.RequestsPerSecond, n.WALFsyncP99Seconds)
	}
}

func TestSamplerStartStop(t *testing.T) {
	f := &fakeNode{}
	s := NewSampler(Config{Every: time.Millisecond, Window: 5 * time.Millisecond, CountEvery: time.Hour}, f.sources(t.TempDir()))
	s.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.samples)
		s.mu.Unlock()
		if n == 6 {
			break
		}
		if n > 6 || time.Now().After(deadline) {
			t.Fatalf("%d samples kept, want the window's 6", n)
		}
		time.Sleep(time.Millisecond)
	}
	// The registers are counted at start, without waiting for CountEvery.
	for n := s.Collect(context.Background()); n.Registers != 50; n = s.Collect(context.Background()) {
		if time.Now().After(deadline) {
			t.Fatalf("no count at start: %+v", n)
		}
		time.Sleep(time.Millisecond)
	}
	s.Stop()
}
