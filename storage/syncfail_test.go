package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/caspaxos/caspaxos/protocol"
)

// errInjected is the error the failing filesystem returns from a sync.
var errInjected = errors.New("injected fsync failure (EIO)")

// syncFailer fails the syncs of files whose path contains match once armed.
// If hold is set, an armed sync first waits until hold is closed.
type syncFailer struct {
	match string
	armed atomic.Bool
	held  chan struct{} // closed when the first armed sync is waiting
	hold  chan struct{}
	once  sync.Once
}

func (f *syncFailer) MaybeError(op errorfs.Op) error {
	if op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData {
		return nil
	}
	if !f.armed.Load() || !strings.Contains(op.Path, f.match) {
		return nil
	}
	if f.hold != nil {
		f.once.Do(func() { close(f.held) })
		<-f.hold
	}
	return errInjected
}

func (f *syncFailer) String() string { return "syncFailer(" + f.match + ")" }

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testRegister(n uint64) protocol.Register {
	return protocol.Register{
		Promise:  protocol.Ballot{Counter: n, Proposer: 1},
		Accepted: protocol.Ballot{Counter: n, Proposer: 1},
		State:    protocol.State{Value: fmt.Appendf(nil, "value %d", n), Version: n},
	}
}

func openFailing(t *testing.T, fs vfs.FS, f *syncFailer) (*Pebble, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	s, err := OpenPebble("/data", PebbleOptions{
		FS:     errorfs.Wrap(fs, f),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatalf("OpenPebble: %v", err)
	}
	return s, logs
}

// checkStopped checks that every call of a stopped store fails with
// ErrSyncFailed (and ErrClosed), and that exactly one line says so.
func checkStopped(t *testing.T, s *Pebble, logs *lockedBuffer) {
	t.Helper()
	calls := map[string]error{}
	_, calls["Get"] = s.Get("k")
	calls["Apply"] = s.Apply([]Entry{{Key: "k", Register: testRegister(99)}})
	_, calls["Remove"] = s.Remove("k", testRegister(1))
	calls["Scan"] = s.Scan("", func(string, protocol.Register) bool { return true })
	_, calls["Ceiling"] = s.Ceiling()
	calls["SetCeiling"] = s.SetCeiling(5)
	for name, err := range calls {
		if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a stopped store = %v, want ErrSyncFailed", name, err)
		}
	}
	// The stop becomes visible to callers just before the goroutine that
	// stopped the store (Pebble's, for a background failure) logs it.
	stopLines := func() int { return strings.Count(logs.String(), `msg="caspaxos/storage: store stopped`) }
	deadline := time.Now().Add(10 * time.Second)
	for stopLines() == 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := stopLines(); n != 1 {
		t.Errorf("logged %d stop lines, want 1:\n%s", n, logs)
	}
}

func TestWALSyncFailureStopsStore(t *testing.T) {
	fs := vfs.NewMem()
	f := &syncFailer{match: ".log"}
	s, logs := openFailing(t, fs, f)
	if err := s.Apply([]Entry{{Key: "k", Register: testRegister(1)}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	f.armed.Store(true)
	err := s.Apply([]Entry{{Key: "k", Register: testRegister(2)}})
	if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, errInjected) {
		t.Fatalf("Apply with a failing fsync = %v, want ErrSyncFailed wrapping the cause", err)
	}
	t.Logf("Apply: %v", err)
	checkStopped(t, s, logs)
	if err := s.Close(); err != nil {
		t.Logf("Close of a stopped store: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}

	f.armed.Store(false)
	s, _ = openFailing(t, fs, f)
	defer s.Close()
	if got, err := s.Get("k"); err != nil || got.State.Version < 1 {
		t.Fatalf("after reopening, Get = %v, %v; want the acknowledged write", got.State, err)
	}
}

// TestSyncFailureWithConcurrentWriters fails the WAL's fsync under many
// writers on a crashable filesystem: every Apply that returned nil must be
// in the crash image, and every Apply returns nil or ErrSyncFailed.
func TestSyncFailureWithConcurrentWriters(t *testing.T) {
	fs := vfs.NewCrashableMem()
	f := &syncFailer{match: ".log"}
	s, logs := openFailing(t, fs, f)
	const writers = 16
	acked := make([]uint64, writers) // highest acknowledged n per writer
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := uint64(1); ; n++ {
				if n == 20 {
					started.Done()
				}
				err := s.Apply([]Entry{{Key: fmt.Sprintf("w%02d", w), Register: testRegister(n)}})
				if err != nil {
					if !errors.Is(err, ErrSyncFailed) {
						t.Errorf("Apply = %v, want ErrSyncFailed", err)
					}
					if n < 20 {
						started.Done()
					}
					return
				}
				acked[w] = n
			}
		}()
	}
	started.Wait()
	f.armed.Store(true)
	wg.Wait()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	checkStopped(t, s, logs)
	s.Close()

	s, _ = openFailing(t, crashed, &syncFailer{})
	defer s.Close()
	for w := range writers {
		got, err := s.Get(fmt.Sprintf("w%02d", w))
		if err != nil || got.State.Version < acked[w] {
			t.Errorf("writer %d: acknowledged %d, found %v (%v)", w, acked[w], got.State, err)
		}
	}
}

// TestGetWaitsForSync holds a WAL fsync, so that an Apply's register is in
// Pebble's memtable but not durable, then fails the fsync: Get must not
// answer with the register in between, and must then report the failure.
func TestGetWaitsForSync(t *testing.T) {
	f := &syncFailer{match: ".log", held: make(chan struct{}), hold: make(chan struct{})}
	s, _ := openFailing(t, vfs.NewMem(), f)
	defer s.Close()
	f.armed.Store(true)
	applied := make(chan error, 1)
	go func() { applied <- s.Apply([]Entry{{Key: "k", Register: testRegister(7)}}) }()
	<-f.held
	waitVisible(t, s.db, registerKey("k"))
	got := make(chan error, 1)
	go func() {
		reg, err := s.Get("k")
		if err == nil {
			err = fmt.Errorf("Get answered %v", reg.State)
		}
		got <- err
	}()
	// Proving that Get waits takes a bound: it must not answer while the
	// sync is held.
	select {
	case err := <-got:
		t.Fatalf("Get answered while the Apply was still syncing: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.hold)
	if err := <-applied; !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("Apply = %v, want ErrSyncFailed", err)
	}
	if err := <-got; !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("Get = %v, want ErrSyncFailed", err)
	}
}

// waitStopped returns once s has stopped.
func waitStopped(t *testing.T, s *Pebble) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.gate.failure() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("store not stopped after 10s")
		}
		runtime.Gosched()
	}
}

// waitVisible returns once Pebble itself serves key.
func waitVisible(t *testing.T, db *pebble.DB, key []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, closer, err := db.Get(key)
		if err == nil {
			closer.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %q not in Pebble after 10s: %v", key, err)
		}
	}
}

// TestManifestSyncFailureStopsStore fails the MANIFEST's fsync during a
// flush, in Pebble's background: Pebble calls Fatalf off the caller's
// goroutine, and the store must stop rather than the process.
func TestManifestSyncFailureStopsStore(t *testing.T) {
	f := &syncFailer{match: "MANIFEST-"}
	s, logs := openFailing(t, vfs.NewMem(), f)
	if err := s.Apply([]Entry{{Key: "k", Register: testRegister(1)}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	f.armed.Store(true)
	// The flush never completes (Pebble retries it until closed): do not
	// wait for it, wait for the stop.
	if _, err := s.db.AsyncFlush(); err != nil {
		t.Fatalf("AsyncFlush: %v", err)
	}
	waitStopped(t, s)
	t.Logf("stopped: %v", s.gate.failure())
	checkStopped(t, s, logs)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("Close hangs after a MANIFEST sync failure")
	}
}
