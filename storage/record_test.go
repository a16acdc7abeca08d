package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
)

func TestRecordRoundTrip(t *testing.T) {
	regs := []protocol.Register{
		{},
		testRegister(1),
		{State: protocol.State{Version: 3, Deleted: true}},
		{Promise: protocol.Ballot{Counter: 1<<64 - 1, Proposer: 1<<64 - 1}},
	}
	for _, want := range regs {
		k := registerKey("key")
		got, err := decodeRegister(k, encodeRegister(k, want))
		if err != nil || !got.Equal(want) {
			t.Errorf("round trip of %+v = %+v, %v", want, got, err)
		}
	}
	for _, c := range []uint64{0, 1, 1<<64 - 1} {
		if got, err := decodeCeiling(encodeCeiling(c)); err != nil || got != c {
			t.Errorf("round trip of ceiling %d = %d, %v", c, got, err)
		}
	}
}

// wantCorrupt checks that err is ErrCorrupt and names the key.
func wantCorrupt(t *testing.T, what string, err error, name string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: got %v, want ErrCorrupt", what, err)
	}
	if !strings.Contains(err.Error(), name) {
		t.Fatalf("%s: error %q does not name %s", what, err, name)
	}
}

func TestRecordTruncated(t *testing.T) {
	k := registerKey("k")
	rec := encodeRegister(k, testRegister(5))
	for n := range len(rec) {
		_, err := decodeRegister(k, rec[:n])
		wantCorrupt(t, fmt.Sprintf("register truncated to %d bytes", n), err, `register "k"`)
	}
	rec = encodeCeiling(9)
	for n := range len(rec) {
		_, err := decodeCeiling(rec[:n])
		wantCorrupt(t, "truncated ceiling", err, `"mceiling"`)
	}
}

func TestRecordBitFlip(t *testing.T) {
	k := registerKey("k")
	rec := encodeRegister(k, testRegister(5))
	for bit := range len(rec) * 8 {
		flipped := append([]byte(nil), rec...)
		flipped[bit/8] ^= 1 << (bit % 8)
		_, err := decodeRegister(k, flipped)
		wantCorrupt(t, "bit flip", err, `register "k"`)
	}
	// The checksum covers the key: a record under another key is corrupt.
	_, err := decodeRegister(registerKey("j"), rec)
	wantCorrupt(t, "record under another key", err, `register "j"`)
}

// reseal recomputes the checksum of a record edited on purpose, so that
// the test reaches the checks behind the checksum.
func reseal(k, rec []byte) []byte {
	binary.LittleEndian.PutUint32(rec[0:4], checksum(k, rec[4:]))
	return rec
}

func TestRecordMalformedButChecksummed(t *testing.T) {
	k := registerKey("k")
	tests := []struct {
		name string
		edit func(rec []byte) []byte
		want string
	}{
		{"unknown version", func(r []byte) []byte { r[4] = 3; return r }, "unknown record encoding version 3"},
		{"version 2 without a table", func(r []byte) []byte { r[4] = recordVersionRequests; return r }, "no request table"},
		{"unknown flags", func(r []byte) []byte { r[headerBytes+40] |= 0x80; return r }, "unknown register flags"},
		{"trailing byte", func(r []byte) []byte { return append(r, 0) }, "the record holds"},
		{"long length", func(r []byte) []byte {
			binary.LittleEndian.PutUint32(r[headerBytes+41:], 1000)
			return r
		}, "the record holds"},
		{"short body", func(r []byte) []byte { return r[:headerBytes+10] }, "shorter than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.edit(encodeRegister(k, testRegister(5)))
			_, err := decodeRegister(k, reseal(k, rec))
			wantCorrupt(t, tc.name, err, tc.want)
		})
	}
	rec := append(encodeCeiling(1), 0)
	_, err := decodeCeiling(reseal([]byte(ceilingKey), rec))
	wantCorrupt(t, "ceiling with a trailing byte", err, "ceiling body has 9 bytes")
}
