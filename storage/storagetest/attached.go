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

// scanAttached returns up to limit entries after (afterLease, afterKey).
func scanAttached(t *testing.T, s storage.Store, afterLease uint64, afterKey string, limit int) []storage.Attached {
	t.Helper()
	var out []storage.Attached
	err := s.ScanAttached(afterLease, afterKey, func(lease uint64, key string) bool {
		if len(out) >= limit {
			t.Fatalf("ScanAttached went on after fn returned false")
		}
		out = append(out, storage.Attached{Lease: lease, Key: key})
		return len(out) < limit
	})
	if err != nil {
		t.Fatalf("ScanAttached(%d, %q): %v", afterLease, afterKey, err)
	}
	return out
}

// allAttached pages through the whole index, page entries at a time.
func allAttached(t *testing.T, s storage.Store, page int) []storage.Attached {
	t.Helper()
	var out []storage.Attached
	var after storage.Attached
	for {
		got := scanAttached(t, s, after.Lease, after.Key, page)
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
	if got := scanAttached(t, s, 3, "", 10); !slices.Equal(got, []storage.Attached{{Lease: 5, Key: "c"}, {Lease: 1 << 63, Key: "\x00z"}}) {
		t.Fatalf("ScanAttached(3, \"\") = %v", got)
	}
	if got := scanAttached(t, s, 2, "a", 1); !slices.Equal(got, []storage.Attached{{Lease: 2, Key: "d"}}) {
		t.Fatalf("ScanAttached(2, \"a\") = %v", got)
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
