package storagetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// attachedReg is a register whose state is attached to lease (0: none).
func attachedReg(n, lease uint64) protocol.Register {
	r := reg(n, fmt.Sprint("v", n))
	r.State.Lease = lease
	return r
}

// allAttached pages through the whole index, page entries at a time.
func allAttached(t *testing.T, s storage.Store, page int) []storage.Attached {
	t.Helper()
	var out []storage.Attached
	var after storage.Attached
	for {
		got, err := s.ScanAttached(after.Lease, after.Key, page)
		if err != nil {
			t.Fatalf("ScanAttached(%d, %q, %d): %v", after.Lease, after.Key, page, err)
		}
		if len(got) > page {
			t.Fatalf("ScanAttached returned %d entries, limit %d", len(got), page)
		}
		out = append(out, got...)
		if len(got) < page {
			return out
		}
		after = got[len(got)-1]
	}
}

// testAttached: the index follows each register's lease as Apply,
// ApplyUnsynced, Remove and RemoveMany change it, in (lease, key) order,
// pages from any point, and skips a lease with (L+1, "").
func testAttached(t *testing.T, s storage.Store) {
	if _, err := s.ScanAttached(0, "", 0); err == nil {
		t.Fatal("ScanAttached with limit 0 succeeded")
	}
	check := func(step string, want ...storage.Attached) {
		t.Helper()
		for _, page := range []int{1, 2, 100} {
			if got := allAttached(t, s, page); !slices.Equal(got, want) {
				t.Fatalf("%s: index (pages of %d) %v, want %v", step, page, got, want)
			}
		}
	}
	apply := func(entries ...storage.Entry) {
		t.Helper()
		if err := s.Apply(entries); err != nil {
			t.Fatal(err)
		}
	}
	check("new store")
	apply(storage.Entry{Key: "b", Register: attachedReg(1, 5)}, storage.Entry{Key: "a", Register: attachedReg(2, 5)},
		storage.Entry{Key: "c", Register: attachedReg(3, 0)}, storage.Entry{Key: "\x00z", Register: attachedReg(4, 1<<63)})
	check("attached", storage.Attached{Lease: 5, Key: "a"}, storage.Attached{Lease: 5, Key: "b"}, storage.Attached{Lease: 1 << 63, Key: "\x00z"})
	// Moved to another lease, detached, attached, in one Apply; a key
	// given twice is indexed by its last entry.
	apply(storage.Entry{Key: "a", Register: attachedReg(5, 2)}, storage.Entry{Key: "b", Register: attachedReg(6, 0)},
		storage.Entry{Key: "c", Register: attachedReg(7, 9)}, storage.Entry{Key: "c", Register: attachedReg(8, 5)})
	check("moved", storage.Attached{Lease: 2, Key: "a"}, storage.Attached{Lease: 5, Key: "c"}, storage.Attached{Lease: 1 << 63, Key: "\x00z"})
	// A promise-only write keeps the entry; an unsynced one moves it too.
	r := attachedReg(5, 2)
	r.Promise.Counter += 10
	if err := s.ApplyUnsynced([]storage.Entry{{Key: "a", Register: r}, {Key: "d", Register: attachedReg(9, 2)}}); err != nil {
		t.Fatal(err)
	}
	check("unsynced", storage.Attached{Lease: 2, Key: "a"}, storage.Attached{Lease: 2, Key: "d"}, storage.Attached{Lease: 5, Key: "c"}, storage.Attached{Lease: 1 << 63, Key: "\x00z"})
	// Skipping lease 2 and paging from inside it.
	if got, err := s.ScanAttached(3, "", 10); err != nil || !slices.Equal(got, []storage.Attached{{Lease: 5, Key: "c"}, {Lease: 1 << 63, Key: "\x00z"}}) {
		t.Fatalf("ScanAttached(3, \"\") = %v, %v", got, err)
	}
	if got, err := s.ScanAttached(2, "a", 1); err != nil || !slices.Equal(got, []storage.Attached{{Lease: 2, Key: "d"}}) {
		t.Fatalf("ScanAttached(2, \"a\", 1) = %v, %v", got, err)
	}
	// A delete clears the state's lease; GC's removals drop the entry.
	tomb := attachedReg(10, 0)
	tomb.State = protocol.State{Version: 10, Deleted: true}
	apply(storage.Entry{Key: "c", Register: tomb})
	check("deleted", storage.Attached{Lease: 2, Key: "a"}, storage.Attached{Lease: 2, Key: "d"}, storage.Attached{Lease: 1 << 63, Key: "\x00z"})
	if ok, err := s.Remove("a", r); err != nil || !ok {
		t.Fatalf("Remove: %v, %v", ok, err)
	}
	if ok, err := s.Remove("d", attachedReg(1, 2)); err != nil || ok {
		t.Fatalf("Remove of a register that differs: %v, %v", ok, err)
	}
	removed, err := s.RemoveMany([]storage.Entry{{Key: "\x00z", Register: attachedReg(4, 1<<63)}, {Key: "c", Register: tomb}})
	if err != nil || !slices.Equal(removed, []bool{true, true}) {
		t.Fatalf("RemoveMany: %v, %v", removed, err)
	}
	check("removed", storage.Attached{Lease: 2, Key: "d"})
	// The index is not a register.
	if keys, _ := scanAll(t, s, ""); !slices.Equal(keys, []string{"b", "d"}) {
		t.Fatalf("Scan lists %q", keys)
	}
}
