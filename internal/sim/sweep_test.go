package sim

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSweep runs sweepSeeds seeds in parallel (one per CPU) and checks
// each: invariants while it runs, linearizability per key at the end. It
// then checks that the sweep as a whole exercised every path it is meant
// to (so that a broken generator cannot make it pass vacuously).
func TestSweep(t *testing.T) {
	ops := sweepOps
	if n := flagInt(t, "ops"); n > 0 {
		ops = n
	}
	total := sweep(t, 1, sweepSeeds, ops)
	t.Logf("%d seeds x %d operations:\n%s", sweepSeeds, ops, total.String())
	if missing := total.Missing(); len(missing) > 0 && !t.Failed() {
		t.Errorf("the sweep never exercised: %v", missing)
	}
}

// TestSoak is the long sweep, off by default:
//
//	go test ./internal/sim -run TestSoak -soak 20000 -timeout 0
func TestSoak(t *testing.T) {
	n := flagInt(t, "soak")
	if n == 0 {
		t.Skip("no -soak given")
	}
	first := flagUint(t, "soak-from")
	ops := sweepOps
	if o := flagInt(t, "ops"); o > 0 {
		ops = o
	}
	total := sweep(t, first, first+uint64(n)-1, ops)
	t.Logf("%d seeds from %d x %d operations:\n%s", n, first, ops, total.String())
}

// sweep runs seeds first..last as parallel subtests, adds up their stats
// and logs the slowest seeds (wall time of run and check).
func sweep(t *testing.T, first, last uint64, ops int) Stats {
	var mu sync.Mutex
	var total Stats
	var times []seedTime
	t.Run("seeds", func(t *testing.T) {
		for seed := first; seed <= last; seed++ {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				rep, err := Run(Options{Seed: seed, Ops: ops})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				total.Add(rep.Stats)
				times = append(times, seedTime{seed, time.Since(start)})
			})
		}
	})
	slices.SortFunc(times, func(a, b seedTime) int { return cmp.Compare(b.d, a.d) })
	t.Logf("slowest seeds: %v", times[:min(len(times), 5)])
	return total
}

type seedTime struct {
	seed uint64
	d    time.Duration
}

func (s seedTime) String() string { return fmt.Sprintf("%d (%v)", s.seed, s.d.Round(time.Millisecond)) }

// TestExactlyOnceAcrossGCSeeds replays the soak seeds that found an
// exactly-once write applied twice: its retry, running at the time its
// proposer had fixed when the request arrived, applied again after
// deletion GC removed the key's tombstone and its request table. Changes
// with a request ID now run at the time of each attempt
// (protocol.Proposer.ProposeTimed); with the old rule (variant
// id-time-at-arrival) each seed must fail again, showing the checker
// catches it.
func TestExactlyOnceAcrossGCSeeds(t *testing.T) {
	for _, seed := range []uint64{3000307, 3001713} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			if _, err := Run(Options{Seed: seed, Ops: 8800}); err != nil {
				t.Fatal(err)
			}
			_, err := Run(Options{Seed: seed, Ops: 8800, Variant: Variant{Name: "id-time-at-arrival", IDTimeAtArrival: true}})
			if err == nil || !strings.Contains(err.Error(), "was applied twice") {
				t.Fatalf("with the change's time fixed at arrival: %v, want a request applied twice", err)
			}
		})
	}
}
