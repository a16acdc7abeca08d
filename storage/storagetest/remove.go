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
// against a writer raising the key's version and reading it back. When the
// writer finds its key gone, a Remove must have expected the version it
// wrote: were Remove to compare one register and delete a newer one, the
// writer would find its version gone with no Remove having asked for it.
func testRemoveAtomicWithApply(t *testing.T, s storage.Store) {
	const key, writes = "contended", 300
	var mu sync.Mutex
	expected := map[uint64]bool{} // versions some Remove was called to remove
	removed := 0
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
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
			mu.Lock()
			expected[cur.State.Version] = true
			mu.Unlock()
			ok, err := s.Remove(key, cur)
			if err != nil {
				t.Errorf("Remove: %v", err)
				return
			}
			if ok {
				mu.Lock()
				removed++
				mu.Unlock()
			}
		}
	})
	for v := uint64(1); v <= writes && !t.Failed(); v++ {
		mustApply(t, s, storage.Entry{Key: key, Register: reg(v, "v")})
		got := mustGet(t, s, key)
		mu.Lock()
		asked := expected[v]
		mu.Unlock()
		switch {
		case got.State.Version == 0 && !asked:
			t.Errorf("version %d vanished, but no Remove expected it", v)
		case got.State.Version != 0 && !got.Equal(reg(v, "v")):
			t.Errorf("wrote version %d, read %s", v, describe(got))
		}
	}
	close(done)
	wg.Wait()
	t.Logf("%d Removes matched", removed)
}
