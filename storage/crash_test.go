package storage_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// crashRegister is the register a crash-test writer stores under key at
// sequence number seq, in an Apply that wrote batch (keys). Its value names
// seq and batch, so a register read back can be checked whole and the
// batch it came in can be found.
func crashRegister(writer int, seq uint64, batch []string) protocol.Register {
	value := fmt.Sprintf("%d|%s|%s", seq, strings.Join(batch, ","), strings.Repeat("x", int(seq*37%500)))
	return protocol.Register{
		Promise:  protocol.Ballot{Counter: seq + 1, Proposer: protocol.NodeID(writer + 1)},
		Accepted: protocol.Ballot{Counter: seq, Proposer: protocol.NodeID(writer + 1)},
		State:    protocol.State{Value: []byte(value), Version: seq},
	}
}

// parseCrashRegister recovers seq and batch from a register's value.
func parseCrashRegister(reg protocol.Register) (seq uint64, batch []string, ok bool) {
	parts := strings.SplitN(string(reg.State.Value), "|", 3)
	if len(parts) != 3 {
		return 0, nil, false
	}
	seq, err := strconv.ParseUint(parts[0], 10, 64)
	return seq, strings.Split(parts[1], ","), err == nil
}

// crashModel records what the writers attempted and what was acknowledged.
type crashModel struct {
	mu        sync.Mutex
	cond      *sync.Cond
	attempted map[string]uint64 // highest seq ever attempted per key
	acked     map[string]uint64 // highest seq acknowledged per key
	ceiling   uint64            // highest ceiling acknowledged
	acks      int               // acknowledgements so far
	nextSeq   []uint64          // per writer, survives crashes
	nextCeil  uint64
}

func newCrashModel(writers int) *crashModel {
	m := &crashModel{attempted: map[string]uint64{}, acked: map[string]uint64{}, nextSeq: make([]uint64, writers)}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// snapshot returns a copy of what was acknowledged so far.
func (m *crashModel) snapshot() (map[string]uint64, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	acked := make(map[string]uint64, len(m.acked))
	for k, v := range m.acked {
		acked[k] = v
	}
	return acked, m.ceiling
}

// waitAcks returns once n more acknowledgements than at start arrived, or
// the writers failed.
func (m *crashModel) waitAcks(start, n int, failed func() bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.acks < start+n && !failed() {
		m.cond.Wait()
	}
}

// write runs one writer until stop is closed.
func (m *crashModel) write(t *testing.T, s storage.Store, writer int, rng *rand.Rand, stop <-chan struct{}) {
	const keysPerWriter = 8
	for {
		select {
		case <-stop:
			return
		default:
		}
		m.mu.Lock()
		m.nextSeq[writer]++
		seq := m.nextSeq[writer]
		batch := map[string]bool{}
		for range 1 + rng.IntN(3) {
			batch[fmt.Sprintf("w%d/k%d", writer, rng.IntN(keysPerWriter))] = true
		}
		var keys []string
		for k := range batch {
			keys = append(keys, k)
			m.attempted[k] = seq
		}
		m.mu.Unlock()
		entries := make([]storage.Entry, len(keys))
		for i, k := range keys {
			entries[i] = storage.Entry{Key: k, Register: crashRegister(writer, seq, keys)}
		}
		if err := s.Apply(entries); err != nil {
			t.Errorf("writer %d: Apply: %v", writer, err)
			m.cond.Broadcast()
			return
		}
		m.mu.Lock()
		for _, k := range keys {
			m.acked[k] = seq
		}
		m.acks++
		m.cond.Broadcast()
		m.mu.Unlock()
	}
}

// writeCeilings raises the ceiling until stop is closed.
func (m *crashModel) writeCeilings(t *testing.T, s storage.Store, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		m.mu.Lock()
		m.nextCeil++
		c := m.nextCeil
		m.mu.Unlock()
		if err := s.SetCeiling(c); err != nil {
			t.Errorf("SetCeiling: %v", err)
			m.cond.Broadcast()
			return
		}
		m.mu.Lock()
		m.ceiling = c
		m.mu.Unlock()
	}
}

// verify checks a store reopened after a crash against what had been
// acknowledged before it.
func (m *crashModel) verify(t *testing.T, s storage.Store, acked map[string]uint64, ceiling uint64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, err := s.Ceiling(); err != nil || c < ceiling {
		t.Fatalf("ceiling %d (%v) after a crash, but %d was acknowledged", c, err, ceiling)
	}
	found := map[string]uint64{}
	err := s.Scan("", func(key string, reg protocol.Register) bool {
		seq, batch, ok := parseCrashRegister(reg)
		var writer int
		fmt.Sscanf(key, "w%d/", &writer)
		if !ok || !reg.Equal(crashRegister(writer, seq, batch)) {
			t.Errorf("%s holds a register no writer wrote: %+v", key, reg)
			return false
		}
		if seq > m.attempted[key] {
			t.Errorf("%s holds seq %d, beyond the highest attempted %d", key, seq, m.attempted[key])
		}
		found[key] = seq
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	for key, seq := range acked {
		if found[key] < seq {
			t.Errorf("%s: seq %d was acknowledged before the crash, found %d", key, seq, found[key])
		}
	}
	m.checkAtomic(t, s, found)
}

// checkAtomic checks that each register's batch survived whole: every key
// of the batch holds that seq or a later one.
func (m *crashModel) checkAtomic(t *testing.T, s storage.Store, found map[string]uint64) {
	t.Helper()
	for key, seq := range found {
		reg, err := s.Get(key)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		_, batch, _ := parseCrashRegister(reg)
		for _, other := range batch {
			if found[other] < seq {
				t.Errorf("%s holds seq %d written with %v, but %s holds %d: a torn Apply", key, seq, batch, other, found[other])
			}
		}
	}
}

// TestCrashRecovery runs writers on a crashable in-memory filesystem,
// crashes it at random moments (keeping a random part of what was not
// synced), reopens the crash image and checks that nothing acknowledged
// was lost, no Apply was torn, and the ceiling never went back.
func TestCrashRecovery(t *testing.T) {
	const writers, cycles = 6, 12
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	m := newCrashModel(writers)
	fs := vfs.NewCrashableMem()
	var acked map[string]uint64
	var ceiling uint64
	for cycle := range cycles {
		s, err := storage.OpenPebble("/data", storage.PebbleOptions{FS: fs})
		if err != nil {
			t.Fatalf("cycle %d: OpenPebble: %v", cycle, err)
		}
		if cycle > 0 {
			m.verify(t, s, acked, ceiling)
			if t.Failed() {
				t.Fatalf("cycle %d failed", cycle)
			}
		}
		fs, acked, ceiling = m.runUntilCrash(t, s, fs, rng, writers)
		if t.Failed() {
			return
		}
	}
}

// runUntilCrash runs the writers on s until a random number of Applys were
// acknowledged, then crashes fs. It returns the crash image and what had
// been acknowledged before it was taken.
func (m *crashModel) runUntilCrash(t *testing.T, s storage.Store, fs *vfs.MemFS, rng *rand.Rand, writers int) (*vfs.MemFS, map[string]uint64, uint64) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		wg.Go(func() { m.write(t, s, w, wrng, stop) })
	}
	wg.Go(func() { m.writeCeilings(t, s, stop) })
	m.mu.Lock()
	start := m.acks
	m.mu.Unlock()
	m.waitAcks(start, 10+rng.IntN(150), t.Failed)
	// Acknowledgements recorded before the snapshot were synced before it,
	// hence before the crash image is taken.
	acked, ceiling := m.snapshot()
	cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(3) * 50} // 0, 50 or 100
	if cfg.UnsyncedDataPercent > 0 {
		cfg.RNG = rand.New(rand.NewPCG(rng.Uint64(), 2))
	}
	clone := fs.CrashClone(cfg)
	m.mu.Lock()
	t.Logf("crash after %d acknowledged Applys, keeping %d%% of unsynced data", m.acks-start, cfg.UnsyncedDataPercent)
	m.mu.Unlock()
	close(stop)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	m.forget(acked, ceiling)
	return clone, acked, ceiling
}

// forget drops the acknowledgements recorded after the crash image was
// taken: they were made on the filesystem the crash threw away.
func (m *crashModel) forget(acked map[string]uint64, ceiling uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked = make(map[string]uint64, len(acked))
	for k, v := range acked {
		m.acked[k] = v
	}
	m.ceiling = ceiling
}
