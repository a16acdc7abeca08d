package caspaxos

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The benchmarks run 64 concurrent callers (RunParallel with parallelism
// 64/GOMAXPROCS) against a three-node store, in memory or on Pebble, and
// report ops/s, the share of accepts sent in one round trip and the mean
// number of changes composed into one accept.
//
//	go test -run '^$' -bench . -benchtime 5s

const benchCallers = 64

func benchOpen(b *testing.B, backend string) *Store {
	b.Helper()
	opts := Options{}
	switch backend {
	case "memory":
		opts.Stores = memoryStores(3)
	case "pebble":
		opts.Dir = b.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchParallel(b *testing.B, s *Store, op func(ctx context.Context, caller int64) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var callers atomic.Int64
	b.SetParallelism(max(1, benchCallers/testingProcs()))
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		caller := callers.Add(1)
		for pb.Next() {
			if err := op(ctx, caller); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	// CPU time per operation, of the whole process: steadier than ops/s
	// on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	var accepts, oneRTT, batches, changes, applies, entries uint64
	for _, st := range s.Stats() {
		applies += st.Acceptor.Applies
		entries += st.Acceptor.Entries
		accepts += st.Proposer.AcceptRounds
		oneRTT += st.Proposer.OneRoundTrip
		batches += st.Proposer.ComposedBatches
		changes += st.Proposer.ComposedChanges
	}
	if accepts > 0 && batches > 0 {
		b.ReportMetric(float64(oneRTT)/float64(accepts), "1rtt/accept")
		b.ReportMetric(float64(changes)/float64(batches), "changes/batch")
	}
	if applies > 0 {
		b.ReportMetric(float64(entries)/float64(applies), "registers/apply")
	}
}

func BenchmarkDistinctKeys(b *testing.B) {
	for _, backend := range []string{"memory", "pebble"} {
		b.Run(backend, func(b *testing.B) {
			s := benchOpen(b, backend)
			value := []byte("0123456789abcdef0123456789abcdef")
			benchParallel(b, s, func(ctx context.Context, caller int64) error {
				_, err := s.Put(ctx, fmt.Sprintf("caller/%d", caller), value)
				return err
			})
		})
	}
}

func BenchmarkHotKeyIncrement(b *testing.B) {
	for _, backend := range []string{"memory", "pebble"} {
		b.Run(backend, func(b *testing.B) {
			s := benchOpen(b, backend)
			benchParallel(b, s, func(ctx context.Context, _ int64) error {
				_, _, err := s.Increment(ctx, "hot", 1)
				return err
			})
		})
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }

// cpuTime returns the user and system CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
