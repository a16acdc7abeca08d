package snapshot

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Writer writes one snapshot file. Add the records in strictly ascending
// key order, then Close; nothing is complete before Close returns nil.
type Writer struct {
	f      io.WriteSeeker
	buf    *bufio.Writer
	info   []byte
	sum    hash.Hash32 // over the records and the trailer
	keys   uint64
	bound  uint64
	last   string
	rec    []byte
	closed bool
}

// NewWriter writes a header with info (keys and bound still zero) at f's
// current offset, which must be 0.
func NewWriter(f io.WriteSeeker, info Info) (*Writer, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/snapshot: encoding the header: %w", err)
	}
	if len(b) > MaxInfoBytes {
		return nil, fmt.Errorf("caspaxos/snapshot: the header's info is %d bytes, over %d", len(b), MaxInfoBytes)
	}
	w := &Writer{f: f, buf: bufio.NewWriterSize(f, 256<<10), info: b, sum: crc32.New(castagnoli)}
	if _, err := w.buf.Write(w.header()); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) header() []byte {
	h := encodeFixed(make([]byte, 0, fixedHeaderBytes+len(w.info)+4), w.keys, w.bound, len(w.info))
	h = append(h, w.info...)
	return binary.BigEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// Add appends one record. Keys must rise strictly; version is at least 1.
func (w *Writer) Add(key string, value []byte, version uint64) error {
	switch {
	case w.closed:
		return errors.New("caspaxos/snapshot: Add after Close")
	case key == "":
		return errors.New("caspaxos/snapshot: an empty key")
	case w.keys > 0 && key <= w.last:
		return fmt.Errorf("caspaxos/snapshot: key %q after %q: keys must rise strictly", key, w.last)
	case version == 0:
		return fmt.Errorf("caspaxos/snapshot: key %q has version 0", key)
	}
	r := append(w.rec[:0], tagRecord)
	r = binary.AppendUvarint(r, uint64(len(key)))
	r = append(r, key...)
	r = binary.AppendUvarint(r, version)
	r = binary.AppendUvarint(r, uint64(len(value)))
	r = append(r, value...)
	r = binary.BigEndian.AppendUint32(r, crc32.Checksum(r, castagnoli))
	w.rec = r
	if _, err := w.buf.Write(r); err != nil {
		return err
	}
	w.sum.Write(r)
	w.keys++
	w.bound = max(w.bound, version)
	w.last = key
	return nil
}

// Keys and VersionBound report what was added so far.
func (w *Writer) Keys() uint64         { return w.keys }
func (w *Writer) VersionBound() uint64 { return w.bound }

// Close writes the trailer and the final header. It does not close or sync f.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("caspaxos/snapshot: Close twice")
	}
	w.closed = true
	t := []byte{tagTrailer}
	t = binary.AppendUvarint(t, w.keys)
	t = binary.AppendUvarint(t, w.bound)
	w.sum.Write(t)
	t = binary.BigEndian.AppendUint32(t, w.sum.Sum32())
	if _, err := w.buf.Write(t); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("caspaxos/snapshot: rewriting the header: %w", err)
	}
	if _, err := w.f.Write(w.header()); err != nil {
		return fmt.Errorf("caspaxos/snapshot: rewriting the header: %w", err)
	}
	_, err := w.f.Seek(0, io.SeekEnd)
	return err
}
