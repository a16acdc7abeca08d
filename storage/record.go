package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/caspaxos/caspaxos/protocol"
)

// The record layout is drawn in the package documentation (doc.go).
const (
	// Namespace bytes that start every Pebble key.
	prefixRegister byte = 'r'
	prefixMeta     byte = 'm'

	// ceilingKey is the Pebble key of the ceiling record.
	ceilingKey = string(prefixMeta) + "ceiling"

	// recordVersion is the record encoding of every record but a register
	// whose state holds a request table, which is written in
	// recordVersionRequests; this build reads both.
	recordVersion byte = 1
	// recordVersionRequests: a register record whose body ends with the
	// request table (protocol.State.Requests), after the value.
	recordVersionRequests byte = 2

	headerBytes       = 4 + 1          // CRC-32C, version
	registerBodyBytes = 5*8 + 1 + 4    // ballots, state version, flags, value length
	ceilingBodyBytes  = 8              // the ceiling
	flagDeleted       = byte(1 << 0)   // State.Deleted
	flagCreated       = byte(1 << 1)   // the record ends with State.Created (8 bytes)
	flagLease         = byte(1 << 2)   // State.Lease (8 bytes) is among the trailers
	flagFlags         = byte(1 << 3)   // State.Flags (8 bytes) is among the trailers
	flagLockIndex     = byte(1 << 4)   // State.LockIndex (8 bytes) is among the trailers
	trailerBytes      = 8              // each trailer: one uint64
	maxValueBytes     = math.MaxUint32 // Value length must fit its 4-byte field
	castagnoli        = crc32.Castagnoli
	// knownFlags: every other flag bit must be zero.
	knownFlags = flagDeleted | flagCreated | flagLease | flagFlags | flagLockIndex
)

// trailers are the register's optional uint64 fields at the end of its
// record, in this order (State.Created last, where it was before the
// others existed), each present exactly when its flag bit is set and then
// never 0: a field that is 0 is left out with its bit clear, so a record
// without any is written byte for byte as before they existed.
var trailers = [...]struct {
	flag  byte
	name  string
	field func(*protocol.State) *uint64
}{
	{flagLease, "lease", func(s *protocol.State) *uint64 { return &s.Lease }},
	{flagFlags, "flags", func(s *protocol.State) *uint64 { return &s.Flags }},
	{flagLockIndex, "lock index", func(s *protocol.State) *uint64 { return &s.LockIndex }},
	{flagCreated, "first version", func(s *protocol.State) *uint64 { return &s.Created }},
}

// registerKey returns the Pebble key of register key.
func registerKey(key string) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixRegister
	copy(k[1:], key)
	return k
}

// keyName names a Pebble key in error messages: the register key, or the
// metadata record.
func keyName(pebbleKey []byte) string {
	if len(pebbleKey) > 0 && pebbleKey[0] == prefixRegister {
		return fmt.Sprintf("register %q", pebbleKey[1:])
	}
	return fmt.Sprintf("metadata record %q", pebbleKey)
}

// checksum is the CRC-32C of the Pebble key followed by the record's
// version byte and body (everything after the checksum field).
func checksum(pebbleKey, rest []byte) uint32 {
	table := crc32.MakeTable(castagnoli) // returns the shared table, computed once by hash/crc32
	return crc32.Update(crc32.Update(0, table, pebbleKey), table, rest)
}

// seal fills in the header of rec (whose body is already in place) for key.
func seal(pebbleKey, rec []byte) []byte {
	return sealVersion(pebbleKey, rec, recordVersion)
}

// sealVersion is seal with the record's encoding version.
func sealVersion(pebbleKey, rec []byte, version byte) []byte {
	rec[4] = version
	binary.LittleEndian.PutUint32(rec[0:4], checksum(pebbleKey, rec[4:]))
	return rec
}

// unseal checks rec's header against key and returns its body; only
// encoding version 1 is accepted.
func unseal(pebbleKey, rec []byte) ([]byte, error) {
	b, _, err := unsealAny(pebbleKey, rec, recordVersion)
	return b, err
}

// unsealAny checks rec's header against key and returns its body and its
// encoding version, which must be 1 or, when allowed, upTo.
func unsealAny(pebbleKey, rec []byte, upTo byte) ([]byte, byte, error) {
	if len(rec) < headerBytes {
		return nil, 0, fmt.Errorf("%w: %s: record of %d bytes is shorter than its %d-byte header",
			ErrCorrupt, keyName(pebbleKey), len(rec), headerBytes)
	}
	if v := rec[4]; v < recordVersion || v > upTo {
		return nil, 0, fmt.Errorf("%w: %s: unknown record encoding version %d (this build reads %d to %d)",
			ErrCorrupt, keyName(pebbleKey), v, recordVersion, upTo)
	}
	stored := binary.LittleEndian.Uint32(rec[0:4])
	if computed := checksum(pebbleKey, rec[4:]); stored != computed {
		return nil, 0, fmt.Errorf("%w: %s: checksum mismatch (stored %#08x, computed %#08x)",
			ErrCorrupt, keyName(pebbleKey), stored, computed)
	}
	return rec[headerBytes:], rec[4], nil
}

// encodeRegister returns the register record of reg under pebbleKey.
// The caller has checked that the value fits (maxValueBytes).
func encodeRegister(pebbleKey []byte, reg protocol.Register) []byte {
	rec := make([]byte, registerBytes(reg))
	return encodeRegisterInto(rec, pebbleKey, reg)
}

// registerBytes is the size of reg's record.
func registerBytes(reg protocol.Register) int {
	n := headerBytes + registerBodyBytes + len(reg.State.Value)
	if len(reg.State.Requests) > 0 {
		n += requestsLenBytes + len(reg.State.Requests)
	}
	for _, t := range trailers {
		if *t.field(&reg.State) != 0 {
			n += trailerBytes
		}
	}
	return n
}

// requestsLenBytes is the length field of a version 2 register record's
// request table.
const requestsLenBytes = 4

// encodeRegisterInto is encodeRegister into rec, of registerBytes(reg) bytes.
func encodeRegisterInto(rec, pebbleKey []byte, reg protocol.Register) []byte {
	b := rec[headerBytes:]
	binary.LittleEndian.PutUint64(b[0:], reg.Promise.Counter)
	binary.LittleEndian.PutUint64(b[8:], uint64(reg.Promise.Proposer))
	binary.LittleEndian.PutUint64(b[16:], reg.Accepted.Counter)
	binary.LittleEndian.PutUint64(b[24:], uint64(reg.Accepted.Proposer))
	binary.LittleEndian.PutUint64(b[32:], reg.State.Version)
	var flags byte
	if reg.State.Deleted {
		flags |= flagDeleted
	}
	end := len(b)
	for i := len(trailers) - 1; i >= 0; i-- {
		t := trailers[i]
		if v := *t.field(&reg.State); v != 0 {
			flags |= t.flag
			end -= trailerBytes
			binary.LittleEndian.PutUint64(b[end:], v)
		}
	}
	b[40] = flags
	binary.LittleEndian.PutUint32(b[41:], uint32(len(reg.State.Value)))
	copy(b[registerBodyBytes:], reg.State.Value)
	if len(reg.State.Requests) == 0 {
		return seal(pebbleKey, rec)
	}
	t := b[registerBodyBytes+len(reg.State.Value):]
	binary.LittleEndian.PutUint32(t, uint32(len(reg.State.Requests)))
	copy(t[requestsLenBytes:], reg.State.Requests)
	return sealVersion(pebbleKey, rec, recordVersionRequests)
}

// decodeRegister checks and decodes a register record. The Value it returns
// is a copy: rec may be reused by the caller (Pebble's buffers are).
func decodeRegister(pebbleKey, rec []byte) (protocol.Register, error) {
	b, version, err := unsealAny(pebbleKey, rec, recordVersionRequests)
	if err != nil {
		return protocol.Register{}, err
	}
	var st protocol.State
	if b, err = splitTrailers(pebbleKey, b, &st); err != nil {
		return protocol.Register{}, err
	}
	var requests []byte
	if version == recordVersionRequests {
		if b, requests, err = splitRequests(pebbleKey, b); err != nil {
			return protocol.Register{}, err
		}
	}
	if len(b) < registerBodyBytes {
		return protocol.Register{}, fmt.Errorf("%w: %s: register body of %d bytes is shorter than %d",
			ErrCorrupt, keyName(pebbleKey), len(b), registerBodyBytes)
	}
	flags := b[40]
	if flags&^knownFlags != 0 {
		return protocol.Register{}, fmt.Errorf("%w: %s: unknown register flags %#02x", ErrCorrupt, keyName(pebbleKey), flags)
	}
	n := binary.LittleEndian.Uint32(b[41:])
	if uint64(len(b)-registerBodyBytes) != uint64(n) {
		return protocol.Register{}, fmt.Errorf("%w: %s: register says its value has %d bytes, the record holds %d",
			ErrCorrupt, keyName(pebbleKey), n, len(b)-registerBodyBytes)
	}
	reg := protocol.Register{
		Promise: protocol.Ballot{
			Counter:  binary.LittleEndian.Uint64(b[0:]),
			Proposer: protocol.NodeID(binary.LittleEndian.Uint64(b[8:])),
		},
		Accepted: protocol.Ballot{
			Counter:  binary.LittleEndian.Uint64(b[16:]),
			Proposer: protocol.NodeID(binary.LittleEndian.Uint64(b[24:])),
		},
		State: st,
	}
	reg.State.Version = binary.LittleEndian.Uint64(b[32:])
	reg.State.Deleted = flags&flagDeleted != 0
	if n > 0 {
		reg.State.Value = append([]byte(nil), b[registerBodyBytes:]...)
	}
	if len(requests) > 0 {
		reg.State.Requests = append([]byte(nil), requests...)
	}
	return reg, nil
}

// splitTrailers takes the trailers its flags say a register body ends
// with off its end, into st (each must not be 0: a field that is 0 is
// written without its flag).
func splitTrailers(pebbleKey, b []byte, st *protocol.State) (body []byte, err error) {
	if len(b) < registerBodyBytes {
		return b, nil // a short body is reported by the caller
	}
	flags := b[40]
	for i := len(trailers) - 1; i >= 0; i-- {
		t := trailers[i]
		if flags&t.flag == 0 {
			continue
		}
		if len(b) < registerBodyBytes+trailerBytes {
			return nil, fmt.Errorf("%w: %s: register flags say it ends with its %s, the body of %d bytes has no room for it",
				ErrCorrupt, keyName(pebbleKey), t.name, len(b))
		}
		end := len(b) - trailerBytes
		v := binary.LittleEndian.Uint64(b[end:])
		if v == 0 {
			return nil, fmt.Errorf("%w: %s: register's %s is 0 under the flag that says it has one", ErrCorrupt, keyName(pebbleKey), t.name)
		}
		*t.field(st) = v
		b = b[:end]
	}
	return b, nil
}

// splitRequests splits a version 2 register body into the version 1 body
// and the request table, which must not be empty: a register without one
// is written in version 1.
func splitRequests(pebbleKey, b []byte) (body, requests []byte, err error) {
	if len(b) < registerBodyBytes {
		return nil, nil, fmt.Errorf("%w: %s: register body of %d bytes is shorter than %d",
			ErrCorrupt, keyName(pebbleKey), len(b), registerBodyBytes)
	}
	n := uint64(binary.LittleEndian.Uint32(b[41:]))
	if rest := uint64(len(b) - registerBodyBytes); rest < n+requestsLenBytes {
		return nil, nil, fmt.Errorf("%w: %s: register says its value has %d bytes, the record holds %d and no request table",
			ErrCorrupt, keyName(pebbleKey), n, rest)
	}
	end := registerBodyBytes + int(n)
	m := binary.LittleEndian.Uint32(b[end:])
	if got := uint64(len(b) - end - requestsLenBytes); got != uint64(m) || m == 0 {
		return nil, nil, fmt.Errorf("%w: %s: register says its request table has %d bytes, the record holds %d",
			ErrCorrupt, keyName(pebbleKey), m, got)
	}
	return b[:end], b[end+requestsLenBytes:], nil
}

// encodeCeiling returns the ceiling record of c.
func encodeCeiling(c uint64) []byte {
	rec := make([]byte, headerBytes+ceilingBodyBytes)
	binary.LittleEndian.PutUint64(rec[headerBytes:], c)
	return seal([]byte(ceilingKey), rec)
}

// decodeCeiling checks and decodes a ceiling record.
func decodeCeiling(rec []byte) (uint64, error) {
	b, err := unseal([]byte(ceilingKey), rec)
	if err != nil {
		return 0, err
	}
	if len(b) != ceilingBodyBytes {
		return 0, fmt.Errorf("%w: %s: ceiling body has %d bytes, want %d",
			ErrCorrupt, keyName([]byte(ceilingKey)), len(b), ceilingBodyBytes)
	}
	return binary.LittleEndian.Uint64(b), nil
}

// checkEntries refuses entries a record cannot hold.
func checkEntries(entries []Entry) error {
	for _, e := range entries {
		if n := uint64(len(e.Register.State.Value)); n > maxValueBytes {
			return fmt.Errorf("caspaxos/storage: register %q: value of %d bytes is over the limit of %d bytes",
				e.Key, n, uint64(maxValueBytes))
		}
		if n := uint64(len(e.Register.State.Requests)); n > maxValueBytes {
			return fmt.Errorf("caspaxos/storage: register %q: request table of %d bytes is over the limit of %d bytes",
				e.Key, n, uint64(maxValueBytes))
		}
	}
	return nil
}
