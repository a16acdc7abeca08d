package storagetest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func testAge(t *testing.T, s storage.Store) {
	if a, err := s.Age(); err != nil || a != 0 {
		t.Fatalf("Age of a new store = %d, %v; want 0, nil", a, err)
	}
	for _, a := range []uint64{1, 1 << 40, 3, math.MaxUint64, 0} {
		if err := s.SetAge(a); err != nil {
			t.Fatalf("SetAge(%d): %v", a, err)
		}
		if got, err := s.Age(); err != nil || got != a {
			t.Fatalf("Age after SetAge(%d) = %d, %v", a, got, err)
		}
	}
	// Age and ceiling are separate records, and neither is a register.
	if err := s.SetCeiling(9); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Age(); got != 0 {
		t.Fatalf("Age after SetCeiling(9) = %d, want 0", got)
	}
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("Scan lists %q after SetAge", keys)
	}
}

func testFences(t *testing.T, s storage.Store) {
	got, err := s.Fences()
	if err != nil || len(got) != 0 {
		t.Fatalf("Fences of a new store = %v, %v; want none", got, err)
	}
	want := map[protocol.NodeID]uint64{}
	steps := []map[protocol.NodeID]uint64{
		{1: 5},
		{2: 7, 3: 1},
		{1: 9},
		{},
		{math.MaxUint64: math.MaxUint64, 2: 0},
	}
	for _, step := range steps {
		if err := s.SetFences(step); err != nil {
			t.Fatalf("SetFences(%v): %v", step, err)
		}
		maps.Copy(want, step)
		got, err := s.Fences()
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("Fences after SetFences(%v) = %v, %v; want %v", step, got, err, want)
		}
	}
	got, _ = s.Fences()
	got[1] = 1000 // the caller owns the map
	if again, _ := s.Fences(); again[1] != 9 {
		t.Fatalf("changing the map Fences returned changed the store: %v", again)
	}
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("Scan lists %q after SetFences", keys)
	}
}

func testGCQueue(t *testing.T, s storage.Store) {
	if items, err := s.GCQueue("", 10); err != nil || len(items) != 0 {
		t.Fatalf("GCQueue of a new store = %v, %v; want none", items, err)
	}
	queued := []storage.GCItem{
		{Key: "b", Version: 2}, {Key: "a", Version: 7}, {Key: "b", Version: 1},
		{Key: "", Version: 3}, {Key: "a\x00", Version: 1}, {Key: "b", Version: 1 << 40},
		{Key: "ключ", Version: math.MaxUint64}, {Key: "a", Version: 7}, // a duplicate
	}
	if err := s.QueueGC(queued); err != nil {
		t.Fatalf("QueueGC: %v", err)
	}
	all := []storage.GCItem{
		{Key: "", Version: 3}, {Key: "a", Version: 7}, {Key: "a\x00", Version: 1},
		{Key: "b", Version: 1}, {Key: "b", Version: 2}, {Key: "b", Version: 1 << 40},
		{Key: "ключ", Version: math.MaxUint64},
	}
	wantQueue(t, s, "", 100, all)
	wantQueue(t, s, "", 2, all[:2])
	wantQueue(t, s, "a\x00", 3, all[2:5])
	wantQueue(t, s, "b", 100, all[3:])
	wantQueue(t, s, "c", 100, all[6:])
	wantQueue(t, s, "я", 100, nil)
	if _, err := s.GCQueue("", 0); err == nil {
		t.Fatal("GCQueue with limit 0 returned no error")
	}
	if err := s.DequeueGC([]storage.GCItem{{Key: "b", Version: 2}, {Key: "a", Version: 7}, {Key: "never", Version: 1}}); err != nil {
		t.Fatalf("DequeueGC: %v", err)
	}
	rest := slices.DeleteFunc(slices.Clone(all), func(it storage.GCItem) bool {
		return it == storage.GCItem{Key: "b", Version: 2} || it == storage.GCItem{Key: "a", Version: 7}
	})
	wantQueue(t, s, "", 100, rest)
	for _, empty := range [][]storage.GCItem{nil, {}} {
		if err := s.QueueGC(empty); err != nil {
			t.Fatalf("empty QueueGC: %v", err)
		}
		if err := s.DequeueGC(empty); err != nil {
			t.Fatalf("empty DequeueGC: %v", err)
		}
	}
	wantQueue(t, s, "", 100, rest)
	// Queue items are not registers.
	if keys, _ := scanAll(t, s, ""); len(keys) != 0 {
		t.Fatalf("Scan lists %q with only GC queue items stored", keys)
	}
	if err := s.DequeueGC(rest); err != nil {
		t.Fatal(err)
	}
	wantQueue(t, s, "", 100, nil)
}

func wantQueue(t *testing.T, s storage.Store, start string, limit int, want []storage.GCItem) {
	t.Helper()
	got, err := s.GCQueue(start, limit)
	if err != nil {
		t.Fatalf("GCQueue(%q, %d): %v", start, limit, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("GCQueue(%q, %d) = %v, want %v", start, limit, got, want)
	}
}

func testRemoveMany(t *testing.T, s storage.Store) {
	tomb := protocol.Register{
		Promise:  protocol.Ballot{Counter: 9, Proposer: 2},
		Accepted: protocol.Ballot{Counter: 8, Proposer: 2},
		State:    protocol.State{Version: 4, Deleted: true},
	}
	other := tomb
	other.Accepted.Counter = 7
	for i := range 4 {
		mustApply(t, s, storage.Entry{Key: fmt.Sprintf("k%d", i), Register: tomb})
	}
	got, err := s.RemoveMany([]storage.Entry{
		{Key: "k0", Register: tomb},
		{Key: "k1", Register: other},
		{Key: "absent", Register: tomb},
		{Key: "k3", Register: tomb},
	})
	if err != nil {
		t.Fatalf("RemoveMany: %v", err)
	}
	if want := []bool{true, false, false, true}; !slices.Equal(got, want) {
		t.Fatalf("RemoveMany = %v, want %v", got, want)
	}
	wantReg(t, s, "k0", protocol.Register{})
	wantReg(t, s, "k1", tomb)
	wantReg(t, s, "k2", tomb)
	wantReg(t, s, "k3", protocol.Register{})
	if got, err := s.RemoveMany(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty RemoveMany = %v, %v", got, err)
	}
	if _, err := s.RemoveMany([]storage.Entry{{Key: "k1", Register: tomb}, {Key: "k1", Register: tomb}}); err == nil {
		t.Fatal("RemoveMany took a key twice")
	}
	wantReg(t, s, "k1", tomb)
}

func testGCClosed(t *testing.T, s storage.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Age", func() error { _, err := s.Age(); return err }},
		{"SetAge", func() error { return s.SetAge(1) }},
		{"Fences", func() error { _, err := s.Fences(); return err }},
		{"SetFences", func() error { return s.SetFences(map[protocol.NodeID]uint64{1: 1}) }},
		{"empty SetFences", func() error { return s.SetFences(nil) }},
		{"QueueGC", func() error { return s.QueueGC([]storage.GCItem{{Key: "k"}}) }},
		{"GCQueue", func() error { _, err := s.GCQueue("", 1); return err }},
		{"DequeueGC", func() error { return s.DequeueGC([]storage.GCItem{{Key: "k"}}) }},
		{"RemoveMany", func() error { _, err := s.RemoveMany([]storage.Entry{{Key: "k"}}); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, err)
		}
	}
}
