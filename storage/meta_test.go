package storage

import (
	"bytes"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
)

// TestGCQueueKeyOrder checks the queue key encoding against the order it
// promises, (Key, Version), with keys full of the bytes it escapes.
func TestGCQueueKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x01, 0xFF, 'a'}
	items := make([]GCItem, 2000)
	for i := range items {
		k := make([]byte, rng.IntN(5))
		for j := range k {
			k[j] = alphabet[rng.IntN(len(alphabet))]
		}
		items[i] = GCItem{Key: string(k), Version: rng.Uint64N(4) << (rng.IntN(2) * 62)}
	}
	for _, it := range items {
		got, err := gcQueueItem(gcQueueKey(it))
		if err != nil || got != it {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", it, got, err)
		}
		for _, o := range items[:50] {
			want := cmpItems(it, o)
			if got := bytes.Compare(gcQueueKey(it), gcQueueKey(o)); got != want {
				t.Fatalf("encoded %+v vs %+v compares %d, want %d", it, o, got, want)
			}
			if it.Key >= o.Key && bytes.Compare(gcQueueKey(it), gcQueueBound(o.Key)) < 0 {
				t.Fatalf("%+v sorts below the bound of %q", it, o.Key)
			}
			if it.Key < o.Key && bytes.Compare(gcQueueKey(it), gcQueueBound(o.Key)) >= 0 {
				t.Fatalf("%+v sorts at or above the bound of %q", it, o.Key)
			}
		}
	}
	for _, bad := range [][]byte{{'q'}, {'q', 0, 1}, append([]byte{'q', 0, 2}, make([]byte, 8)...), append([]byte{'q', 'a', 0}, make([]byte, 8)...)} {
		if _, err := gcQueueItem(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decoding %q: %v, want ErrCorrupt", bad, err)
		}
	}
}

func cmpItems(a, b GCItem) int {
	switch {
	case a.Key < b.Key:
		return -1
	case a.Key > b.Key:
		return 1
	case a.Version < b.Version:
		return -1
	case a.Version > b.Version:
		return 1
	}
	return 0
}

// TestPebbleGCStateSurvivesReopen checks that age, fences and queue are on
// disk, not only in memory.
func TestPebbleGCStateSurvivesReopen(t *testing.T) {
	fs := vfs.NewMem()
	s, err := OpenPebble("/data", PebbleOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fences := map[protocol.NodeID]uint64{1: 4, 3: 9}
	items := []GCItem{{Key: "a", Version: 2}, {Key: "b\x00", Version: 5}}
	if err := errors.Join(s.SetAge(12), s.SetFences(fences), s.QueueGC(items), s.Close()); err != nil {
		t.Fatal(err)
	}
	s, err = OpenPebble("/data", PebbleOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	age, err := s.Age()
	if err != nil || age != 12 {
		t.Fatalf("Age after reopen = %d, %v", age, err)
	}
	got, err := s.Fences()
	if err != nil || !maps.Equal(got, fences) {
		t.Fatalf("Fences after reopen = %v, %v", got, err)
	}
	queued, err := s.GCQueue("", 10)
	if err != nil || !slices.Equal(queued, items) {
		t.Fatalf("GCQueue after reopen = %v, %v", queued, err)
	}
}

func TestGCRecordsAreChecked(t *testing.T) {
	rec := encodeUint64([]byte(ageKey), 7)
	if v, err := decodeUint64([]byte(ageKey), rec); err != nil || v != 7 {
		t.Fatalf("decode = %d, %v", v, err)
	}
	if _, err := decodeUint64(fenceKey(1), rec); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("an age record under a fence key: %v, want ErrCorrupt", err)
	}
	rec[len(rec)-1] ^= 1
	if _, err := decodeUint64([]byte(ageKey), rec); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped bit: %v, want ErrCorrupt", err)
	}
	k := gcQueueKey(GCItem{Key: "k", Version: 1})
	if err := decodeEmpty(k, append(encodeEmpty(k), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a queue record with a body: %v, want ErrCorrupt", err)
	}
}
