package storagetest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func testCeiling(t *testing.T, s storage.Store) {
	if c, err := s.Ceiling(); err != nil || c != 0 {
		t.Fatalf("Ceiling of a new store = %d, %v; want 0, nil", c, err)
	}
	// The ceiling only rises: a lower one changes nothing (a proposer
	// restarted from 1,000,000 must not be lowered to 65,534 and then
	// reuse counters).
	for _, tc := range []struct{ set, want uint64 }{
		{5, 5},
		{1_000_000, 1_000_000},
		{65_534, 1_000_000},
		{1 << 40, 1 << 40},
		{3, 1 << 40},
		{0, 1 << 40},
		{1<<40 + 1, 1<<40 + 1},
		{math.MaxUint64, math.MaxUint64},
		{7, math.MaxUint64},
	} {
		if err := s.SetCeiling(tc.set); err != nil {
			t.Fatalf("SetCeiling(%d): %v", tc.set, err)
		}
		if got, err := s.Ceiling(); err != nil || got != tc.want {
			t.Fatalf("Ceiling after SetCeiling(%d) = %d, %v; want %d", tc.set, got, err, tc.want)
		}
	}
	// The ceiling is not a register.
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("Scan lists %q after SetCeiling", keys)
	}
}

// Racing SetCeilings leave the highest of them.
func testConcurrentCeiling(t *testing.T, s storage.Store) {
	raceCeiling(t, "SetCeiling", s.SetCeiling, s.Ceiling)
}

// raceCeiling has writers set a ceiling at once, half of them rising, half
// falling from the highest, and checks that the highest is left.
func raceCeiling(t *testing.T, name string, set func(uint64) error, get func() (uint64, error)) {
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c := uint64(w*each + i)
				if w%2 == 1 {
					c = uint64(writers*each - i)
				}
				if err := set(c); err != nil {
					t.Errorf("%s(%d): %v", name, c, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, err := get(); err != nil || got != writers*each {
		t.Fatalf("after racing %ss: %d, %v; want %d", name, got, err, writers*each)
	}
}

func testClosed(t *testing.T, s storage.Store) {
	mustApply(t, s, storage.Entry{Key: "k", Register: reg(1, "v")})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get("k"); return err }},
		{"Apply", func() error { return s.Apply([]storage.Entry{{Key: "k", Register: reg(2, "w")}}) }},
		{"empty Apply", func() error { return s.Apply(nil) }},
		{"Remove", func() error { _, err := s.Remove("k", reg(1, "v")); return err }},
		{"Scan", func() error {
			return s.Scan("", func(string, protocol.Register) bool {
				t.Errorf("Scan of a closed store called fn")
				return true
			})
		}},
		{"Ceiling", func() error { _, err := s.Ceiling(); return err }},
		{"SetCeiling", func() error { return s.SetCeiling(1) }},
		{"Close", s.Close},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, err)
		}
	}
}

// testAliasing checks that no slice a caller holds shares memory with what
// the store keeps.
func testAliasing(t *testing.T, s storage.Store) {
	value := []byte("original")
	entries := []storage.Entry{{Key: "k", Register: protocol.Register{State: protocol.State{Value: value, Version: 1}}}}
	mustApply(t, s, entries...)
	copy(value, "MUTATED!")
	entries[0].Register.State.Version = 99
	want := protocol.Register{State: protocol.State{Value: []byte("original"), Version: 1}}
	wantReg(t, s, "k", want)

	got := mustGet(t, s, "k")
	copy(got.State.Value, "mutated!")
	wantReg(t, s, "k", want)

	err := s.Scan("", func(_ string, r protocol.Register) bool {
		copy(r.State.Value, "scanned!")
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	wantReg(t, s, "k", want)

	expect := mustGet(t, s, "k")
	copy(expect.State.Value, "original") // same bytes, other slice
	if ok, err := s.Remove("k", expect); err != nil || !ok {
		t.Fatalf("Remove with an equal copy = %v, %v; want true", ok, err)
	}
}

// testConcurrentApply runs many writers at once, each applying to keys of
// its own and to keys all of them share, and checks that every write
// acknowledged last is what is stored.
func testConcurrentApply(t *testing.T, s storage.Store) {
	const writers, perWriter = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				n := uint64(w*perWriter + i)
				err := s.Apply([]storage.Entry{
					{Key: fmt.Sprintf("own/%02d", w), Register: reg(n, fmt.Sprintf("w%d i%d", w, i))},
					{Key: fmt.Sprintf("shared/%d", i%4), Register: reg(n, "shared")},
				})
				if err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		i := perWriter - 1
		wantReg(t, s, fmt.Sprintf("own/%02d", w), reg(uint64(w*perWriter+i), fmt.Sprintf("w%d i%d", w, i)))
	}
	for i := range 4 {
		got := mustGet(t, s, fmt.Sprintf("shared/%d", i))
		n := got.State.Version
		if n%perWriter%4 != uint64(i) || !got.Equal(reg(n, "shared")) {
			t.Errorf("shared/%d holds %s, which no writer wrote there", i, describe(got))
		}
	}
	keys, _ := scanAll(t, s, "")
	if len(keys) != writers+4 {
		t.Errorf("Scan gave %d keys, want %d", len(keys), writers+4)
	}
}

// testConcurrentGetApply reads keys while they are written: every read
// gives a register that was written whole, in an order that never goes back.
func testConcurrentGetApply(t *testing.T, s storage.Store) {
	const keys, writes = 4, 50
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for v := uint64(1); v <= writes; v++ {
				if err := s.Apply([]storage.Entry{{Key: key, Register: reg(v, key)}}); err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			var last uint64
			for last < writes {
				got, err := s.Get(key)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				v := got.State.Version
				if v < last || (v > 0 && !got.Equal(reg(v, key))) {
					t.Errorf("Get(%q) = %s after version %d", key, describe(got), last)
					return
				}
				last = v
			}
		}()
	}
	wg.Wait()
}
