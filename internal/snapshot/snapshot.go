// Package snapshot is the file format of `caspaxos snapshot`: a backup of
// every live key of a cluster with its value and version, written while
// the cluster serves (through the listing path: each key consistent at
// some instant of the save, the whole not a snapshot across keys) and read
// back by `snapshot restore` and `snapshot status`.
//
// A file is a header, one record per key in strictly ascending key order,
// and a trailer; integers are big-endian or unsigned varints (uv), and
// every checksum is CRC-32C (Castagnoli):
//
//	header  = magic "CASPXSNP" (8 bytes)
//	          format    uint16   (1; any other is refused)
//	          flags     uint16   (0)
//	          keys      uint64   the number of records
//	          bound     uint64   the version bound: the highest version of any record
//	          infoLen   uint32   (at most MaxInfoBytes)
//	          info      infoLen bytes of JSON: Info (time, source, members)
//	          crc       uint32   over every header byte before it
//	record  = 'K' uv(len key) key uv(version) uv(len value) value
//	          crc uint32 over the record's bytes before it
//	trailer = 'E' uv(keys) uv(bound)
//	          crc uint32 over every record byte and the trailer's bytes before it
//
// and nothing after the trailer. The writer learns keys and bound only at
// the end: it writes the header with zeros, then the records and the
// trailer, and then writes the header again in place (the info, and so the
// header's length, do not change). A reader refuses a file whose magic,
// format or any checksum is wrong, whose records are out of order or past
// the bound, whose trailer disagrees with the header, that ends early
// (ErrTruncated) or that goes on past its trailer: a truncated or altered
// file never restores in part without saying so.
package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Format is the format version this package writes and reads.
const Format uint16 = 1

const (
	magic = "CASPXSNP"
	// fixedHeaderBytes is the header before its info: magic, format,
	// flags, keys, bound, infoLen.
	fixedHeaderBytes = 8 + 2 + 2 + 8 + 8 + 4
	// MaxInfoBytes bounds the header's info (JSON).
	MaxInfoBytes = 1 << 20
	tagRecord    = 'K'
	tagTrailer   = 'E'
)

var (
	// ErrNotSnapshot: the file does not begin with the magic.
	ErrNotSnapshot = errors.New("caspaxos/snapshot: not a caspaxos snapshot (bad magic)")
	// ErrUnknownFormat: the file's format version is not Format.
	ErrUnknownFormat = errors.New("caspaxos/snapshot: unknown snapshot format version")
	// ErrCorrupt: a checksum failed, or the file contradicts itself.
	ErrCorrupt = errors.New("caspaxos/snapshot: corrupt snapshot")
	// ErrTruncated: the file ends before its trailer.
	ErrTruncated = errors.New("caspaxos/snapshot: truncated snapshot (it ends before its trailer)")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Member is one member of the saved cluster, as its membership listed it.
type Member struct {
	Name     string `json:"name"`
	ID       uint64 `json:"id"`
	PeerAddr string `json:"peer_addr,omitempty"`
}

// Info is the header's descriptive part.
type Info struct {
	// Created is when the save began.
	Created time.Time `json:"created"`
	// Source is the endpoints the save read from.
	Source string `json:"source,omitempty"`
	// ConfigVersion and Members: the cluster's membership when the save began.
	ConfigVersion uint64   `json:"config_version,omitempty"`
	Members       []Member `json:"members,omitempty"`
}

// Header is what a file says of itself.
type Header struct {
	Format uint16
	// Keys is the number of records.
	Keys uint64
	// VersionBound is the highest version of any record (0 when there are
	// none): a restore writes every key above it.
	VersionBound uint64
	Info         Info
}

// Record is one key.
type Record struct {
	Key     string
	Value   []byte
	Version uint64
}

// Limits bound what a reader accepts of one record.
type Limits struct {
	MaxKeyBytes   int
	MaxValueBytes int
}

// DefaultLimits are well above a node's own limits (kv.DefaultLimits: 4 KiB
// keys, 1 MiB values) and bound what a corrupt length can make a reader
// hold.
var DefaultLimits = Limits{MaxKeyBytes: 64 << 10, MaxValueBytes: 64 << 20}

func encodeFixed(b []byte, keys, bound uint64, infoLen int) []byte {
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, Format)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, keys)
	b = binary.BigEndian.AppendUint64(b, bound)
	return binary.BigEndian.AppendUint32(b, uint32(infoLen))
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
