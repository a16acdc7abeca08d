package storage

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
)

// FuzzAttachedKey: an attached-index key decodes only if it is exactly
// the key of the entry it decodes to (lease not 0); otherwise ErrCorrupt.
// Keys of two entries compare as the entries do (ScanAttached's order).
func FuzzAttachedKey(f *testing.F) {
	for _, a := range []Attached{{Lease: 1, Key: "k"}, {Lease: 1<<64 - 1, Key: ""}, {Lease: 7, Key: "a\x00\xff"}} {
		f.Add(attachedKey(a), uint64(3), "k")
	}
	f.Add([]byte("l\x00\x00\x00\x00\x00\x00\x00\x00k"), uint64(0), "")
	f.Add([]byte("l\x00"), uint64(1), "")
	f.Add([]byte("r\x00\x00\x00\x00\x00\x00\x00\x01"), uint64(1), "\x00")
	f.Fuzz(func(t *testing.T, pebbleKey []byte, lease uint64, key string) {
		a, err := attachedEntry(pebbleKey)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || a != (Attached{}) {
				t.Fatalf("malformed key %x: %+v, %v; want ErrCorrupt and nothing", pebbleKey, a, err)
			}
		} else if again := attachedKey(a); !bytes.Equal(again, pebbleKey) || a.Lease == 0 {
			t.Fatalf("key %x decoded to %+v, whose key is %x", pebbleKey, a, again)
		}
		if a.Lease == 0 || lease == 0 {
			return
		}
		b := Attached{Lease: lease, Key: key}
		if got, want := bytes.Compare(attachedKey(a), attachedKey(b)), compareAttached(a, b); got != want {
			t.Fatalf("keys of %+v and %+v compare %d, the entries %d", a, b, got, want)
		}
	})
}

// FuzzRecordLease: recordLease, which reads a stored record's lease to
// move its index entry, agrees with decodeRegister on every record: the
// same lease when it decodes, an error when it does not (the header and
// trailers it reads are decodeRegister's; a record it reads while
// decodeRegister refuses it is one whose body past them is damaged).
func FuzzRecordLease(f *testing.F) {
	for _, l := range []uint64{0, 1, 1<<64 - 1} {
		r := testRegister(3)
		r.State.Lease = l
		r.State.Requests = nil
		f.Add([]byte("rk"), encodeRegister([]byte("rk"), r))
		r.State.Flags, r.State.Created = 9, 4
		f.Add([]byte("rk"), encodeRegister([]byte("rk"), r))
	}
	f.Add([]byte("rk"), []byte{})
	f.Fuzz(func(t *testing.T, pebbleKey, rec []byte) {
		lease, err := recordLease(pebbleKey, rec)
		reg, derr := decodeRegister(pebbleKey, rec)
		switch {
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("recordLease: %v, want ErrCorrupt", err)
		case derr == nil && (err != nil || lease != reg.State.Lease):
			t.Fatalf("record of %v: recordLease says %d, %v", reg, lease, err)
		case err == nil && derr != nil && lease != 0 && !errors.Is(derr, ErrCorrupt):
			t.Fatalf("decodeRegister: %v", derr)
		}
	})
}

// TestRecordLeaseOfEveryTrailer: the lease is found whatever other
// trailers the record holds.
func TestRecordLeaseOfEveryTrailer(t *testing.T) {
	for mask := range 16 {
		r := protocol.Register{State: protocol.State{Value: []byte("v"), Version: 2}}
		if mask&1 != 0 {
			r.State.Lease = 11
		}
		if mask&2 != 0 {
			r.State.Flags = 12
		}
		if mask&4 != 0 {
			r.State.LockIndex = 13
		}
		if mask&8 != 0 {
			r.State.Created = 2
			r.State.Requests = []byte{1}
		}
		got, err := recordLease([]byte("rk"), encodeRegister([]byte("rk"), r))
		if err != nil || got != r.State.Lease {
			t.Fatalf("%+v: %d, %v", r.State, got, err)
		}
	}
}

// TestPebbleAttachedSurvivesReopen: the index survives a reopen, and a
// store reopened with entries keeps moving them (a store that never had
// one skips reading the stored leases: indexAttached).
func TestPebbleAttachedSurvivesReopen(t *testing.T) {
	fs := vfs.NewMem()
	s, err := OpenPebble("/data", PebbleOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, lease uint64) {
		t.Helper()
		r := testRegister(2)
		r.State.Lease = lease
		if err := s.Apply([]Entry{{Key: key, Register: r}}); err != nil {
			t.Fatal(err)
		}
	}
	index := func() []Attached {
		t.Helper()
		var out []Attached
		if err := s.ScanAttached(0, "", func(lease uint64, key string) bool {
			out = append(out, Attached{Lease: lease, Key: key})
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	put("plain", 0)
	if s.attachedSeen.Load() {
		t.Fatal("a store without attached keys reads stored leases")
	}
	put("a", 4)
	put("b", 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenPebble("/data", PebbleOptions{FS: fs}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := index(); !slices.Equal(got, []Attached{{4, "a"}, {4, "b"}}) {
		t.Fatalf("index after reopen: %v", got)
	}
	put("a", 0)
	if got := index(); !slices.Equal(got, []Attached{{4, "b"}}) {
		t.Fatalf("index after a detaching put after reopen: %v", got)
	}
}
