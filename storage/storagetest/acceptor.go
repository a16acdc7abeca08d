package storagetest

import (
	"errors"
	"math"
	"testing"

	"github.com/caspaxos/caspaxos/storage"
)

// The acceptor ceiling only rises, and is apart from the proposer's
// ceiling and from the registers.
func testAcceptorCeiling(t *testing.T, s storage.Store) {
	if c, err := s.AcceptorCeiling(); err != nil || c != 0 {
		t.Fatalf("AcceptorCeiling of a new store = %d, %v; want 0, nil", c, err)
	}
	for _, tc := range []struct{ set, want uint64 }{
		{65_536, 65_536},
		{10, 65_536},
		{0, 65_536},
		{1 << 40, 1 << 40},
		{math.MaxUint64, math.MaxUint64},
		{7, math.MaxUint64},
	} {
		if err := s.SetAcceptorCeiling(tc.set); err != nil {
			t.Fatalf("SetAcceptorCeiling(%d): %v", tc.set, err)
		}
		if got, err := s.AcceptorCeiling(); err != nil || got != tc.want {
			t.Fatalf("AcceptorCeiling after SetAcceptorCeiling(%d) = %d, %v; want %d", tc.set, got, err, tc.want)
		}
	}
	if c, err := s.Ceiling(); err != nil || c != 0 {
		t.Fatalf("the proposer's Ceiling = %d, %v after SetAcceptorCeiling; want 0 (apart)", c, err)
	}
	if err := s.SetCeiling(3); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.AcceptorCeiling(); c != math.MaxUint64 {
		t.Fatalf("AcceptorCeiling = %d after SetCeiling(3); want it unchanged", c)
	}
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("Scan lists %q after SetAcceptorCeiling", keys)
	}
}

// Racing SetAcceptorCeilings leave the highest.
func testConcurrentAcceptorCeiling(t *testing.T, s storage.Store) {
	raceCeiling(t, "SetAcceptorCeiling", s.SetAcceptorCeiling, s.AcceptorCeiling)
}

// ApplyUnsynced writes what Apply writes (durability aside), and the last
// write of a key wins whichever of the two made it.
func testApplyUnsynced(t *testing.T, s storage.Store) {
	if err := s.ApplyUnsynced(nil); err != nil {
		t.Fatalf("ApplyUnsynced(nil): %v", err)
	}
	if err := s.ApplyUnsynced([]storage.Entry{{Key: "a", Register: reg(1, "one")}, {Key: "b", Register: reg(2, "")}}); err != nil {
		t.Fatalf("ApplyUnsynced: %v", err)
	}
	wantReg(t, s, "a", reg(1, "one"))
	wantReg(t, s, "b", reg(2, ""))
	mustApply(t, s, storage.Entry{Key: "a", Register: reg(3, "three")})
	if err := s.ApplyUnsynced([]storage.Entry{{Key: "b", Register: reg(4, "four")}}); err != nil {
		t.Fatalf("ApplyUnsynced: %v", err)
	}
	wantReg(t, s, "a", reg(3, "three"))
	wantReg(t, s, "b", reg(4, "four"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"ApplyUnsynced":      func() error { return s.ApplyUnsynced([]storage.Entry{{Key: "a", Register: reg(5, "")}}) },
		"SetAcceptorCeiling": func() error { return s.SetAcceptorCeiling(9) },
		"AcceptorCeiling":    func() error { _, err := s.AcceptorCeiling(); return err },
	} {
		if err := call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
