// Package storagetest is the conformance suite every storage.Store passes.
//
// Call Run from a _test.go file of the implementation:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store { return storage.NewMemory() })
//	}
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// Run runs the suite. open returns a new, empty store each time it is
// called; the suite closes it (a second Close returning ErrClosed is
// expected and ignored). Cleanups open registers with t run after that.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"GetAbsent", testGetAbsent},
		{"RoundTrip", testRoundTrip},
		{"EmptyApply", testEmptyApply},
		{"AtomicMultiEntry", testAtomicMultiEntry},
		{"LastEntryWins", testLastEntryWins},
		{"Overwrite", testOverwrite},
		{"Remove", testRemove},
		{"RemoveAtomicWithApply", testRemoveAtomicWithApply},
		{"ScanOrder", testScanOrder},
		{"ScanStart", testScanStart},
		{"ScanEarlyStop", testScanEarlyStop},
		{"ScanSnapshot", testScanSnapshot},
		{"ScanReentrant", testScanReentrant},
		{"CloseDuringScan", testCloseDuringScan},
		{"Ceiling", testCeiling},
		{"ConcurrentCeiling", testConcurrentCeiling},
		{"Closed", testClosed},
		{"Aliasing", testAliasing},
		{"ConcurrentApply", testConcurrentApply},
		{"ConcurrentGetApply", testConcurrentGetApply},
		{"Age", testAge},
		{"Fences", testFences},
		{"GCQueue", testGCQueue},
		{"RemoveMany", testRemoveMany},
		{"GCClosed", testGCClosed},
		{"AcceptorCeiling", testAcceptorCeiling},
		{"ConcurrentAcceptorCeiling", testConcurrentAcceptorCeiling},
		{"ApplyUnsynced", testApplyUnsynced},
		{"Attached", testAttached},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// reg builds a register with every field set from n, so that registers
// built from different n differ in every field.
func reg(n uint64, value string) protocol.Register {
	return protocol.Register{
		Promise:  protocol.Ballot{Counter: n + 1, Proposer: protocol.NodeID(n%7 + 1)},
		Accepted: protocol.Ballot{Counter: n, Proposer: protocol.NodeID(n%5 + 1)},
		State:    protocol.State{Value: []byte(value), Version: n},
	}
}

func describe(r protocol.Register) string {
	return fmt.Sprintf("{promise %s accepted %s state %s}", r.Promise, r.Accepted, r.State)
}

func mustApply(t *testing.T, s storage.Store, entries ...storage.Entry) {
	t.Helper()
	if err := s.Apply(entries); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func mustGet(t *testing.T, s storage.Store, key string) protocol.Register {
	t.Helper()
	r, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

func wantReg(t *testing.T, s storage.Store, key string, want protocol.Register) {
	t.Helper()
	if got := mustGet(t, s, key); !got.Equal(want) {
		t.Fatalf("Get(%q) = %s, want %s", key, describe(got), describe(want))
	}
}

// scanAll returns the keys and registers Scan gives from start.
func scanAll(t *testing.T, s storage.Store, start string) ([]string, []protocol.Register) {
	t.Helper()
	var keys []string
	var regs []protocol.Register
	err := s.Scan(start, func(k string, r protocol.Register) bool {
		keys = append(keys, k)
		regs = append(regs, r)
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", start, err)
	}
	return keys, regs
}

func testGetAbsent(t *testing.T, s storage.Store) {
	wantReg(t, s, "absent", protocol.Register{})
	mustApply(t, s, storage.Entry{Key: "present", Register: reg(1, "v")})
	wantReg(t, s, "absent", protocol.Register{})
	wantReg(t, s, "presen", protocol.Register{})
	wantReg(t, s, "present\x00", protocol.Register{})
}

func testRoundTrip(t *testing.T, s storage.Store) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	tests := []struct {
		name string
		key  string
		reg  protocol.Register
	}{
		{"all fields", "k", reg(42, "value")},
		{"tombstone", "tomb", protocol.Register{
			Promise:  protocol.Ballot{Counter: 9, Proposer: 3},
			Accepted: protocol.Ballot{Counter: 8, Proposer: 2},
			State:    protocol.State{Version: 17, Deleted: true},
		}},
		{"empty value", "empty", reg(3, "")},
		{"promise only", "promised", protocol.Register{Promise: protocol.Ballot{Counter: 5, Proposer: 1}}},
		{"binary value", "bin", reg(4, "\x00\xff\x00\n\r")},
		{"large value", "big", protocol.Register{State: protocol.State{Value: big, Version: 1}}},
		{"max fields", "max", protocol.Register{
			Promise:  protocol.Ballot{Counter: math.MaxUint64, Proposer: math.MaxUint64},
			Accepted: protocol.Ballot{Counter: math.MaxUint64, Proposer: math.MaxUint64},
			State:    protocol.State{Value: []byte("x"), Version: math.MaxUint64, Deleted: true},
		}},
		{"empty key", "", reg(5, "for the empty key")},
		{"binary key", "\x00\xff/\x01", reg(6, "binary key")},
		{"unicode key", "ключ/🔑", reg(7, "unicode key")},
		{"first version of its life", "created", protocol.Register{
			Accepted: protocol.Ballot{Counter: 12, Proposer: 1},
			State:    protocol.State{Value: []byte("life"), Version: 12, Created: 10},
		}},
		{"first version and request table", "createdids", protocol.Register{
			State: protocol.State{Value: []byte("ids"), Version: 5, Created: 5, Requests: []byte{1, 0, 0}},
		}},
		{"attributes", "attrs", protocol.Register{
			State: protocol.State{Value: []byte("a"), Version: 7, Created: 6, Requests: []byte{1, 0, 0},
				Attrs: protocol.Attrs{Lease: 1 << 40, Flags: 42, LockIndex: 2}},
		}},
	}
	applied := map[string]protocol.Register{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustApply(t, s, storage.Entry{Key: tc.key, Register: tc.reg})
			wantReg(t, s, tc.key, tc.reg)
			applied[tc.key] = tc.reg
		})
	}
	keys, regs := scanAll(t, s, "")
	if len(keys) != len(applied) {
		t.Fatalf("Scan gave %d keys, want %d", len(keys), len(applied))
	}
	for i, k := range keys {
		if want := applied[k]; !regs[i].Equal(want) {
			t.Errorf("Scan gave %q = %s, want %s", k, describe(regs[i]), describe(want))
		}
	}
}

func testEmptyApply(t *testing.T, s storage.Store) {
	mustApply(t, s)
	mustApply(t, s, []storage.Entry{}...)
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("empty Applys wrote %q", keys)
	}
}

func testAtomicMultiEntry(t *testing.T, s storage.Store) {
	entries := []storage.Entry{
		{Key: "a", Register: reg(1, "one")},
		{Key: "b", Register: reg(2, "two")},
		{Key: "c", Register: reg(3, "three")},
	}
	mustApply(t, s, entries...)
	for _, e := range entries {
		wantReg(t, s, e.Key, e.Register)
	}
}

func testLastEntryWins(t *testing.T, s storage.Store) {
	mustApply(t, s,
		storage.Entry{Key: "k", Register: reg(1, "first")},
		storage.Entry{Key: "other", Register: reg(2, "other")},
		storage.Entry{Key: "k", Register: reg(3, "last")},
	)
	wantReg(t, s, "k", reg(3, "last"))
	wantReg(t, s, "other", reg(2, "other"))
}

func testOverwrite(t *testing.T, s storage.Store) {
	mustApply(t, s, storage.Entry{Key: "k", Register: reg(1, "a long first value")})
	mustApply(t, s, storage.Entry{Key: "k", Register: reg(2, "b")})
	wantReg(t, s, "k", reg(2, "b"))
	tomb := reg(3, "")
	tomb.State.Deleted = true
	mustApply(t, s, storage.Entry{Key: "k", Register: tomb})
	wantReg(t, s, "k", tomb)
	// An older register overwrites a newer one: the store keeps what it is
	// given; ordering ballots is the acceptor's job.
	mustApply(t, s, storage.Entry{Key: "k", Register: reg(1, "older")})
	wantReg(t, s, "k", reg(1, "older"))
}
