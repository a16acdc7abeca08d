package storage_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// Benchmarks run on the real disk, in a temporary directory under $TMPDIR:
//
//	go test -run '^$' -bench . -benchtime 50000x ./storage/
//
// BenchmarkFdatasync is the ceiling one writer can reach; BenchmarkApply
// shows what group commit makes of it with many writers. Each reports
// ops/s and the p50 and p99 latency of one operation; BenchmarkApply also
// reports the p50 and p99 of the WAL fsyncs Pebble made in the same run,
// timed through the filesystem, so that a latency can be read in syncs.

// runTimed runs b.N operations spread over writers goroutines, timing each
// one, and reports throughput and latency percentiles.
func runTimed(b *testing.B, writers int, op func(writer, i int) error) {
	b.Helper()
	lat := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Go(func() {
			lat[w] = make([]time.Duration, 0, n)
			for i := range n {
				t0 := time.Now()
				if err := op(w, i); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op") // meaningless with many writers; ops/s says it
}

// BenchmarkFdatasync appends 256 bytes to a file and fdatasyncs it, from
// one writer: the raw rate of the disk the store sits on.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256)
	runTimed(b, 1, func(_, _ int) error {
		if _, err := f.Write(buf); err != nil {
			return err
		}
		return fdatasync(f)
	})
}

// BenchmarkApply applies one register with a 256-byte value per operation,
// synced, from 1 to 256 concurrent writers, each on keys of its own.
//
// Before the timed part it writes applyWarmUpBytes untimed, so that what
// is timed is a running node's steady state: Pebble has rotated its WAL a
// few times and now writes over recycled WAL files instead of growing new
// ones, and memtable flushes come at their steady rate.
func BenchmarkApply(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			fs := &syncTimingFS{FS: vfs.Default}
			s, err := storage.OpenPebble(b.TempDir(), storage.PebbleOptions{FS: fs})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := make([]byte, 256)
			apply := func(w, i int) error {
				reg := protocol.Register{
					Promise:  protocol.Ballot{Counter: uint64(i + 1), Proposer: 1},
					Accepted: protocol.Ballot{Counter: uint64(i + 1), Proposer: 1},
					State:    protocol.State{Value: value, Version: uint64(i + 1)},
				}
				return s.Apply([]storage.Entry{{Key: fmt.Sprintf("w%03d/k%02d", w, i%16), Register: reg}})
			}
			warmUp(b, s, value)
			fs.reset()
			before := s.Stats()
			runTimed(b, writers, apply)
			st := s.Stats()
			if syncs := st.WALSyncs - before.WALSyncs; syncs > 0 {
				b.ReportMetric(float64(st.Applies-before.Applies)/float64(syncs), "applies/sync")
			}
			if p50, p99, ok := fs.percentiles(); ok {
				b.ReportMetric(float64(p50.Microseconds()), "walsync-p50-µs")
				b.ReportMetric(float64(p99.Microseconds()), "walsync-p99-µs")
			}
		})
	}
}

// applyWarmUpBytes is what BenchmarkApply writes before timing: three
// times Pebble's default 4 MiB memtable, so the WAL has been rotated and
// recycled.
const applyWarmUpBytes = 12 << 20

// warmUp writes about applyWarmUpBytes to s, untimed, in Applys of 16
// registers from 64 goroutines (so it takes well under a second whatever
// the number of writers timed next), over the keys BenchmarkApply writes.
func warmUp(b *testing.B, s *storage.Pebble, value []byte) {
	b.Helper()
	const writers, perApply = 64, 16
	applies := applyWarmUpBytes / (perApply * (len(value) + 64))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			entries := make([]storage.Entry, perApply)
			for i := range applies / writers {
				for k := range entries {
					entries[k] = storage.Entry{
						Key:      fmt.Sprintf("w%03d/k%02d", w, k),
						Register: protocol.Register{State: protocol.State{Value: value, Version: uint64(i + 1)}},
					}
				}
				if err := s.Apply(entries); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// syncTimingFS times the fsyncs of the WAL files (names ending in ".log")
// that Pebble creates or recycles through it.
type syncTimingFS struct {
	vfs.FS
	mu    sync.Mutex
	syncs []time.Duration
}

func (fs *syncTimingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs *syncTimingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

func (fs *syncTimingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return syncTimedFile{File: f, fs: fs}, nil
}

func (fs *syncTimingFS) record(d time.Duration) {
	fs.mu.Lock()
	fs.syncs = append(fs.syncs, d)
	fs.mu.Unlock()
}

// reset forgets the syncs timed so far.
func (fs *syncTimingFS) reset() {
	fs.mu.Lock()
	fs.syncs = fs.syncs[:0]
	fs.mu.Unlock()
}

// percentiles returns the p50 and p99 of the syncs timed since reset.
func (fs *syncTimingFS) percentiles() (p50, p99 time.Duration, ok bool) {
	fs.mu.Lock()
	all := slices.Clone(fs.syncs)
	fs.mu.Unlock()
	if len(all) == 0 {
		return 0, 0, false
	}
	slices.Sort(all)
	return all[len(all)/2], all[len(all)*99/100], true
}

// syncTimedFile times its syncs.
type syncTimedFile struct {
	vfs.File
	fs *syncTimingFS
}

func (f syncTimedFile) Sync() error {
	t0 := time.Now()
	err := f.File.Sync()
	f.fs.record(time.Since(t0))
	return err
}

func (f syncTimedFile) SyncData() error {
	t0 := time.Now()
	err := f.File.SyncData()
	f.fs.record(time.Since(t0))
	return err
}

// TestPebbleMemory loads 1 million registers with random (incompressible)
// 256-byte values and reports the process's resident memory (VmRSS). It takes a while, so it
// runs only with CASPAXOS_STORAGE_RSS=1:
//
//	CASPAXOS_STORAGE_RSS=1 go test -run TestPebbleMemory -v ./storage/
func TestPebbleMemory(t *testing.T) {
	if os.Getenv("CASPAXOS_STORAGE_RSS") != "1" {
		t.Skip("set CASPAXOS_STORAGE_RSS=1 to measure")
	}
	const registers, perApply = 1_000_000, 1000
	dir := t.TempDir()
	t.Logf("before opening: %s", memoryReport(t))
	s, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	entries := make([]storage.Entry, 0, perApply)
	for i := range registers {
		value := make([]byte, 256)
		for j := 0; j < len(value); j += 8 {
			binary.LittleEndian.PutUint64(value[j:], rng.Uint64())
		}
		reg := protocol.Register{
			Promise:  protocol.Ballot{Counter: uint64(i + 2), Proposer: 1},
			Accepted: protocol.Ballot{Counter: uint64(i + 1), Proposer: 1},
			State:    protocol.State{Value: value, Version: uint64(i + 1)},
		}
		entries = append(entries, storage.Entry{Key: fmt.Sprintf("key/%08d", i), Register: reg})
		if len(entries) == perApply {
			if err := s.Apply(entries); err != nil {
				t.Fatal(err)
			}
			entries = entries[:0]
		}
	}
	t.Logf("loaded %d registers in %v: %s", registers, time.Since(start).Round(time.Millisecond), memoryReport(t))
	n := 0
	if err := s.Scan("", func(string, protocol.Register) bool { n++; return true }); err != nil || n != registers {
		t.Fatalf("Scan saw %d registers (%v)", n, err)
	}
	t.Logf("after a full Scan: %s", memoryReport(t))
	for i := range 100_000 {
		if _, err := s.Get(fmt.Sprintf("key/%08d", i*7919%registers)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("after 100000 random Gets: %s; on disk %d MiB", memoryReport(t), dirBytes(t, dir)>>20)
}

// memoryReport describes the process's resident memory and Go heap.
func memoryReport(t *testing.T) string {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("VmRSS %d MiB, Go heap in use %d MiB", vmRSSKiB(t)>>10, ms.HeapInuse>>20)
}

// vmRSSKiB reads VmRSS from /proc/self/status.
func vmRSSKiB(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse VmRSS %q: %v", rest, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/self/status")
	return 0
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
