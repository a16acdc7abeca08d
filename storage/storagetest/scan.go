package storagetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// scanKeys are applied in a shuffled order; Scan must give them sorted by
// bytes (so "a\x00" before "a/" before "b", and "B" before "a").
var scanKeys = []string{"", "B", "a", "a\x00", "a/", "a/b", "aa", "b", "b\xff", "\xff"}

func applyScanKeys(t *testing.T, s storage.Store) {
	t.Helper()
	shuffled := slices.Clone(scanKeys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	for i, k := range shuffled {
		mustApply(t, s, storage.Entry{Key: k, Register: reg(uint64(i+1), "value of "+k)})
	}
	if err := s.SetCeiling(99); err != nil {
		t.Fatalf("SetCeiling: %v", err)
	}
}

func testScanOrder(t *testing.T, s storage.Store) {
	applyScanKeys(t, s)
	keys, regs := scanAll(t, s, "")
	if !slices.Equal(keys, scanKeys) {
		t.Fatalf("Scan gave keys %q, want %q", keys, scanKeys)
	}
	for i, k := range keys {
		if want := "value of " + k; string(regs[i].State.Value) != want {
			t.Fatalf("Scan gave %q = %q, want %q", k, regs[i].State.Value, want)
		}
	}
}

func testScanStart(t *testing.T, s storage.Store) {
	applyScanKeys(t, s)
	tests := []struct{ start, first string }{
		{"", ""},
		{"a", "a"}, // an existing key is included
		{"a\x00", "a\x00"},
		{"a\x01", "a/"}, // between keys: the next one
		{"ab", "b"},
		{"b\xff", "b\xff"},
		{"c", "\xff"},
	}
	for _, tc := range tests {
		keys, _ := scanAll(t, s, tc.start)
		i := slices.Index(scanKeys, tc.first)
		if want := scanKeys[i:]; !slices.Equal(keys, want) {
			t.Errorf("Scan(%q) gave %q, want %q", tc.start, keys, want)
		}
	}
	if keys, _ := scanAll(t, s, "\xff\x00"); len(keys) != 0 {
		t.Errorf("Scan past the last key gave %q", keys)
	}
}

func testScanEarlyStop(t *testing.T, s storage.Store) {
	applyScanKeys(t, s)
	for stopAfter := 1; stopAfter <= 3; stopAfter++ {
		var got []string
		err := s.Scan("a", func(k string, _ protocol.Register) bool {
			got = append(got, k)
			return len(got) < stopAfter
		})
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if want := scanKeys[2 : 2+stopAfter]; !slices.Equal(got, want) {
			t.Fatalf("Scan stopping after %d gave %q, want %q", stopAfter, got, want)
		}
	}
}

// testScanSnapshot applies, from inside Scan's fn, one Apply that changes
// two keys the scan has not reached yet: the scan must see both changes or
// neither, and must not block the Apply.
func testScanSnapshot(t *testing.T, s storage.Store) {
	for i := range 10 {
		mustApply(t, s, storage.Entry{Key: fmt.Sprintf("k%d", i), Register: reg(1, "old")})
	}
	seen := map[string]uint64{}
	err := s.Scan("", func(k string, r protocol.Register) bool {
		seen[k] = r.State.Version
		if k == "k1" {
			mustApply(t, s,
				storage.Entry{Key: "k8", Register: reg(2, "new")},
				storage.Entry{Key: "k9", Register: reg(2, "new")},
				storage.Entry{Key: "k5x", Register: reg(2, "inserted")},
			)
		}
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if seen["k8"] != seen["k9"] {
		t.Fatalf("Scan saw half of an Apply: k8 at version %d, k9 at version %d", seen["k8"], seen["k9"])
	}
	_, inserted := seen["k5x"]
	if inserted != (seen["k8"] == 2) {
		t.Fatalf("Scan saw half of an Apply: k5x seen %v, k8 at version %d", inserted, seen["k8"])
	}
	wantReg(t, s, "k9", reg(2, "new"))
}

// testScanReentrant calls every method but Close from inside fn.
func testScanReentrant(t *testing.T, s storage.Store) {
	applyScanKeys(t, s)
	n := 0
	err := s.Scan("", func(k string, r protocol.Register) bool {
		n++
		if got := mustGet(t, s, k); !got.Equal(r) {
			t.Errorf("Get(%q) inside Scan = %s, want %s", k, describe(got), describe(r))
		}
		if _, err := s.Remove(k, r); err != nil {
			t.Errorf("Remove inside Scan: %v", err)
		}
		if _, err := s.Ceiling(); err != nil {
			t.Errorf("Ceiling inside Scan: %v", err)
		}
		if err := s.Scan(k, func(string, protocol.Register) bool { return false }); err != nil {
			t.Errorf("Scan inside Scan: %v", err)
		}
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if n != len(scanKeys) {
		t.Fatalf("Scan visited %d keys, want %d", n, len(scanKeys))
	}
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("keys left after removing all inside Scan: %q", keys)
	}
}

// testCloseDuringScan closes the store while fn runs: Close waits for the
// scan, which stops with ErrClosed at its next key.
func testCloseDuringScan(t *testing.T, s storage.Store) {
	applyScanKeys(t, s)
	closed := make(chan error, 1)
	calls := 0
	err := s.Scan("", func(string, protocol.Register) bool {
		calls++
		if calls == 1 {
			go func() { closed <- s.Close() }()
			waitClosed(t, s)
		}
		return true
	})
	if !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Scan during Close = %v, want ErrClosed", err)
	}
	if calls != 1 {
		t.Fatalf("Scan called fn %d times after Close began", calls-1)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitClosed returns once s turns calls away with ErrClosed.
func waitClosed(t *testing.T, s storage.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Ceiling(); errors.Is(err, storage.ErrClosed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not closed after 10s")
		}
		runtime.Gosched()
	}
}
