package storagetest

import (
	"sync"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func testRemove(t *testing.T, s storage.Store) {
	base := reg(10, "value")
	differ := func(change func(r *protocol.Register)) protocol.Register {
		r := base
		r.State.Value = []byte("value")
		change(&r)
		return r
	}
	tests := []struct {
		name   string
		stored bool // whether the key holds base
		expect protocol.Register
		want   bool
	}{
		{"matching", true, base, true},
		{"absent key", false, base, false},
		{"absent key, zero expect", false, protocol.Register{}, false},
		{"other promise", true, differ(func(r *protocol.Register) { r.Promise.Counter++ }), false},
		{"other promise proposer", true, differ(func(r *protocol.Register) { r.Promise.Proposer++ }), false},
		{"other accepted", true, differ(func(r *protocol.Register) { r.Accepted.Counter++ }), false},
		{"other version", true, differ(func(r *protocol.Register) { r.State.Version++ }), false},
		{"other value", true, differ(func(r *protocol.Register) { r.State.Value = []byte("valuE") }), false},
		{"deleted", true, differ(func(r *protocol.Register) { r.State.Deleted = true }), false},
		{"zero expect", true, protocol.Register{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "k/" + tc.name
			if tc.stored {
				mustApply(t, s, storage.Entry{Key: key, Register: base})
			}
			got, err := s.Remove(key, tc.expect)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Remove(%s) = %v, want %v", describe(tc.expect), got, tc.want)
			}
			want := protocol.Register{}
			if tc.stored && !tc.want {
				want = base
			}
			wantReg(t, s, key, want)
			if again, err := s.Remove(key, tc.expect); err != nil || (again && tc.want) {
				t.Fatalf("second Remove = %v, %v; want false, nil", again, err)
			}
		})
	}
	if keys, _ := scanAll(t, s, "k/matching"); len(keys) > 0 && keys[0] == "k/matching" {
		t.Fatalf("Scan still lists a removed key")
	}
}

// testRemoveAtomicWithApply races Remove(key, what Get just returned)
// against a writer raising the key's version. Were Remove to compare one
// register and delete a newer one, the final register could vanish
// without any Remove having matched it.
func testRemoveAtomicWithApply(t *testing.T, s storage.Store) {
	const key, writes = "contended", 200
	var wg sync.WaitGroup
	done := make(chan struct{})
	removed := make(map[uint64]bool) // versions a Remove reported removing
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			cur, err := s.Get(key)
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			if cur.State.Version == 0 {
				continue
			}
			ok, err := s.Remove(key, cur)
			if err != nil {
				t.Errorf("Remove: %v", err)
				return
			}
			if ok {
				removed[cur.State.Version] = true
			}
		}
	}()
	for v := uint64(1); v <= writes; v++ {
		if err := s.Apply([]storage.Entry{{Key: key, Register: reg(v, "v")}}); err != nil {
			t.Errorf("Apply: %v", err)
			break
		}
	}
	close(done)
	wg.Wait()
	final := mustGet(t, s, key)
	switch {
	case final.State.Version == 0 && !removed[writes]:
		t.Fatalf("the last write (version %d) vanished, but no Remove matched it; removed %d versions", writes, len(removed))
	case final.State.Version != 0 && !equal(final, reg(writes, "v")):
		t.Fatalf("final register %s, want the last write", describe(final))
	case final.State.Version != 0 && removed[writes]:
		t.Fatalf("a Remove reported removing version %d, which is still there", writes)
	}
}
