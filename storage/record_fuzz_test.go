package storage

import (
	"bytes"
	"cmp"
	"errors"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

// Fuzz targets of the record decoders: what Pebble hands back from the
// disk is untrusted. `go test` runs their seeds; scripts/fuzz.sh fuzzes
// them (README.md, "make fuzz").

// FuzzDecodeRegister: a register record either decodes, and then it is
// exactly the record encodeRegister writes for what it decoded (the
// encoding is canonical: no byte is free), or it fails with ErrCorrupt and
// returns nothing. Any one bit flipped in a record that decodes makes it
// fail (the CRC-32C sees every single-bit error): a damaged record never
// yields content.
func FuzzDecodeRegister(f *testing.F) {
	for _, s := range []struct {
		key string
		reg protocol.Register
	}{
		{"k", protocol.Register{}},
		{"key", testRegister(5)},
		{"gone", protocol.Register{Promise: protocol.Ballot{Counter: 9, Proposer: 2}, State: protocol.State{Version: 3, Deleted: true}}},
		{"\x00\xff", protocol.Register{Promise: protocol.Ballot{Counter: 1<<64 - 1, Proposer: 1<<64 - 1}}},
		// Encoding version 2: a request table after the value.
		{"ids", protocol.Register{Accepted: protocol.Ballot{Counter: 4, Proposer: 1}, State: protocol.State{Value: []byte("v"), Version: 4, Requests: []byte{1, 0, 0}}}},
		{"idsgone", protocol.Register{State: protocol.State{Version: 6, Deleted: true, Requests: []byte{1, 2, 1, 1, 'x', 1, 6, 4}}}},
		// The first version of the register's life, at the record's end.
		{"created", protocol.Register{State: protocol.State{Value: []byte("v"), Version: 9, Created: 7}}},
		{"createdids", protocol.Register{State: protocol.State{Value: []byte("w"), Version: 3, Created: 3, Requests: []byte{1, 0, 0}}}},
		// Attributes (lease, flags, lock index) before the first version.
		{"attrs", protocol.Register{State: protocol.State{Value: []byte("a"), Version: 8, Created: 2, Attrs: protocol.Attrs{Lease: 5, Flags: 1 << 63, LockIndex: 3}}}},
		{"lease", protocol.Register{State: protocol.State{Value: []byte("l"), Version: 4, Requests: []byte{1, 0, 0}, Attrs: protocol.Attrs{Lease: 9}}}},
	} {
		rec := encodeRegister(registerKey(s.key), s.reg)
		f.Add(s.key, rec, uint16(0))
		f.Add(s.key, rec[:len(rec)-1], uint16(7))
	}
	f.Fuzz(func(t *testing.T, key string, rec []byte, flip uint16) {
		k := registerKey(key)
		checkRegisterRecord(t, key, rec, flip)
		// The same bytes with a valid header, so that the fuzzer gets past
		// the checksum into the body's checks.
		if len(rec) >= headerBytes {
			checkRegisterRecord(t, key, seal(k, bytes.Clone(rec)), flip)
			checkRegisterRecord(t, key, sealVersion(k, bytes.Clone(rec), recordVersionRequests), flip)
		}
	})
}

// checkRegisterRecord checks FuzzDecodeRegister's properties of rec.
func checkRegisterRecord(t *testing.T, key string, rec []byte, flip uint16) {
	t.Helper()
	k := registerKey(key)
	reg, err := decodeRegister(k, rec)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) || !reg.Equal(protocol.Register{}) {
			t.Fatalf("decode failed with %v and %+v, want ErrCorrupt and nothing", err, reg)
		}
		return
	}
	if again := encodeRegister(k, reg); !bytes.Equal(again, rec) {
		t.Fatalf("record %x decoded to %+v, which encodes to %x", rec, reg, again)
	}
	bad := bytes.Clone(rec)
	bit := int(flip) % (8 * len(bad))
	bad[bit/8] ^= 1 << (bit % 8)
	if got, err := decodeRegister(k, bad); !errors.Is(err, ErrCorrupt) || !got.Equal(protocol.Register{}) {
		t.Fatalf("record with bit %d flipped decoded to %+v, %v; want ErrCorrupt", bit, got, err)
	}
	// The checksum covers the key: the record read under another key
	// (a record moved by a damaged index) is refused.
	if got, err := decodeRegister(registerKey(key+"x"), rec); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("record of %q decoded under another key: %+v, %v", key, got, err)
	}
}

// FuzzRegisterRoundTrip: every register encodes to a record that decodes
// to it, and the record's size is registerBytes.
func FuzzRegisterRoundTrip(f *testing.F) {
	f.Add("k", uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), false, []byte(nil), []byte(nil), uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add("key", uint64(5), uint64(1), uint64(5), uint64(1), uint64(5), false, []byte("value 5"), []byte(nil), uint64(2), uint64(0), uint64(0), uint64(0))
	f.Add("", uint64(1<<64-1), uint64(1<<64-1), uint64(7), uint64(3), uint64(2), true, []byte{}, []byte{}, uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add("ids", uint64(5), uint64(1), uint64(5), uint64(1), uint64(5), false, []byte("value 5"), []byte{1, 0, 0}, uint64(5), uint64(0), uint64(0), uint64(0))
	f.Add("attrs", uint64(5), uint64(1), uint64(5), uint64(1), uint64(5), false, []byte("v"), []byte{1, 0, 0}, uint64(5), uint64(77), uint64(0), uint64(1))
	f.Fuzz(func(t *testing.T, key string, pc, pp, ac, ap, version uint64, deleted bool, value, requests []byte, created, lease, flags, lockIndex uint64) {
		if len(requests) == 0 {
			requests = nil // an empty table is no table: it reads back as nil
		}
		want := protocol.Register{
			Promise:  protocol.Ballot{Counter: pc, Proposer: protocol.NodeID(pp)},
			Accepted: protocol.Ballot{Counter: ac, Proposer: protocol.NodeID(ap)},
			State: protocol.State{Value: value, Version: version, Deleted: deleted, Requests: requests, Created: created,
				Attrs: protocol.Attrs{Lease: lease, Flags: flags, LockIndex: lockIndex}},
		}
		k := registerKey(key)
		rec := encodeRegister(k, want)
		if len(rec) != registerBytes(want) {
			t.Fatalf("record of %d bytes, registerBytes says %d", len(rec), registerBytes(want))
		}
		got, err := decodeRegister(k, rec)
		if err != nil || !got.Equal(want) {
			t.Fatalf("round trip of %+v gave %+v, %v", want, got, err)
		}
		if len(value) > 0 && &got.State.Value[0] == &rec[len(rec)-len(value)] {
			t.Fatal("decoded value shares the record's buffer, which Pebble reuses")
		}
	})
}

// FuzzDecodeUint64: the records of an 8-byte body (ceiling, age, fences)
// and of an empty body (GC queue items) decode only when re-encoding what
// they hold gives the same bytes; otherwise ErrCorrupt.
func FuzzDecodeUint64(f *testing.F) {
	for _, key := range [][]byte{[]byte(ceilingKey), []byte(ageKey), fenceKey(3), gcQueueKey(GCItem{Key: "k", Version: 2})} {
		f.Add(key, encodeUint64(key, 7))
		f.Add(key, encodeUint64(key, 1<<64-1))
		f.Add(key, encodeEmpty(key))
	}
	f.Fuzz(func(t *testing.T, key, rec []byte) {
		checkSmallRecord(t, key, rec)
		if len(rec) >= headerBytes { // past the checksum, as in FuzzDecodeRegister
			checkSmallRecord(t, key, seal(key, bytes.Clone(rec)))
		}
	})
}

// checkSmallRecord checks FuzzDecodeUint64's properties of rec.
func checkSmallRecord(t *testing.T, key, rec []byte) {
	t.Helper()
	v, err := decodeUint64(key, rec)
	switch {
	case err != nil && (!errors.Is(err, ErrCorrupt) || v != 0):
		t.Fatalf("uint64 record: %d, %v; want 0 and ErrCorrupt", v, err)
	case err == nil && !bytes.Equal(encodeUint64(key, v), rec):
		t.Fatalf("uint64 record %x decoded to %d, which encodes to %x", rec, v, encodeUint64(key, v))
	}
	if bytes.Equal(key, []byte(ceilingKey)) {
		c, cerr := decodeCeiling(rec)
		if c != v || (cerr == nil) != (err == nil) {
			t.Fatalf("ceiling record: decodeCeiling %d, %v; decodeUint64 %d, %v", c, cerr, v, err)
		}
	}
	err = decodeEmpty(key, rec)
	switch {
	case err != nil && !errors.Is(err, ErrCorrupt):
		t.Fatalf("empty record: %v, want ErrCorrupt", err)
	case err == nil && !bytes.Equal(encodeEmpty(key), rec):
		t.Fatalf("empty record %x decodes, but encodes to %x", rec, encodeEmpty(key))
	}
}

// FuzzGCQueueKey: a GC queue key decodes only if it is exactly the key of
// the item it decodes to; otherwise ErrCorrupt.
func FuzzGCQueueKey(f *testing.F) {
	for _, it := range []GCItem{{Key: "k", Version: 1}, {Key: "", Version: 0}, {Key: "a\x00b\x00", Version: 1<<64 - 1}, {Key: "\x00\x01", Version: 9}} {
		f.Add(gcQueueKey(it))
	}
	f.Add([]byte("q\x00"))
	f.Add([]byte("r\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, pebbleKey []byte) {
		it, err := gcQueueItem(pebbleKey)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || it != (GCItem{}) {
				t.Fatalf("malformed key %x: %+v, %v; want ErrCorrupt and nothing", pebbleKey, it, err)
			}
			return
		}
		if again := gcQueueKey(it); !bytes.Equal(again, pebbleKey) {
			t.Fatalf("key %x decoded to %+v, whose key is %x", pebbleKey, it, again)
		}
	})
}

// FuzzGCQueueOrder: keys round-trip, Pebble's byte order of the keys is
// the order of (Key, Version), and gcQueueBound(start) sorts at or before
// exactly the items whose Key is at or after start (GCQueue's scan).
func FuzzGCQueueOrder(f *testing.F) {
	f.Add("a", uint64(1), "a", uint64(2), "a")
	f.Add("a", uint64(1), "a\x00", uint64(0), "a\x00")
	f.Add("a\x00\xff", uint64(5), "a\x01", uint64(0), "a\x00")
	f.Add("", uint64(0), "\x00", uint64(1<<64-1), "")
	f.Fuzz(func(t *testing.T, ka string, va uint64, kb string, vb uint64, start string) {
		a, b := GCItem{Key: ka, Version: va}, GCItem{Key: kb, Version: vb}
		for _, it := range []GCItem{a, b} {
			if got, err := gcQueueItem(gcQueueKey(it)); err != nil || got != it {
				t.Fatalf("round trip of %+v: %+v, %v", it, got, err)
			}
		}
		want := cmp.Or(cmp.Compare(ka, kb), cmp.Compare(va, vb))
		if got := bytes.Compare(gcQueueKey(a), gcQueueKey(b)); got != want {
			t.Fatalf("keys of %+v and %+v compare %d, the items %d", a, b, got, want)
		}
		bound := gcQueueBound(start)
		if after := bytes.Compare(gcQueueKey(a), bound) >= 0; after != (ka >= start) {
			t.Fatalf("key of %+v at or after the bound of %q: %v, want %v", a, start, after, ka >= start)
		}
	})
}

// FuzzFenceKey: a fence key's proposer round-trips, and a key of the wrong
// size is ErrCorrupt.
func FuzzFenceKey(f *testing.F) {
	f.Add([]byte(nil), uint64(0))
	f.Add(fenceKey(3), uint64(3))
	f.Add([]byte(fencePrefix+"\x00"), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, pebbleKey []byte, id uint64) {
		if got, err := fenceProposer(fenceKey(protocol.NodeID(id))); err != nil || got != protocol.NodeID(id) {
			t.Fatalf("fence key of %d gave %d, %v", id, got, err)
		}
		p, err := fenceProposer(pebbleKey)
		switch {
		case err != nil && (!errors.Is(err, ErrCorrupt) || len(pebbleKey) == len(fencePrefix)+uint64Bytes):
			t.Fatalf("fence key %x: %v", pebbleKey, err)
		case err == nil && len(pebbleKey) != len(fencePrefix)+uint64Bytes:
			t.Fatalf("fence key %x of the wrong size gave proposer %d", pebbleKey, p)
		}
	})
}

// TestRegisterRecordVersions: a register without a request table is
// written in encoding version 1, byte for byte as before tables existed,
// so that a build that predates them reads it; one with a table in
// version 2, which such a build refuses (ErrCorrupt, unknown version)
// instead of misreading; and this build reads both.
func TestRegisterRecordVersions(t *testing.T) {
	k := registerKey("k")
	for _, tc := range []struct {
		name    string
		state   protocol.State
		version byte
	}{
		{"no table", protocol.State{Value: []byte("v"), Version: 3}, recordVersion},
		{"tombstone", protocol.State{Version: 4, Deleted: true}, recordVersion},
		{"table", protocol.State{Value: []byte("v"), Version: 3, Requests: []byte{1, 0, 0}}, recordVersionRequests},
		{"tombstone with table", protocol.State{Version: 4, Deleted: true, Requests: []byte{1, 0, 0}}, recordVersionRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := protocol.Register{Accepted: protocol.Ballot{Counter: 3, Proposer: 1}, State: tc.state}
			rec := encodeRegister(k, reg)
			if rec[4] != tc.version {
				t.Fatalf("encoding version %d, want %d", rec[4], tc.version)
			}
			got, err := decodeRegister(k, rec)
			if err != nil || !got.Equal(reg) {
				t.Fatalf("decoded %+v, %v; want %+v", got, err, reg)
			}
			if _, err := unseal(k, rec); (err == nil) != (tc.version == recordVersion) {
				t.Fatalf("a version 1 reader: %v", err)
			}
		})
	}
}
