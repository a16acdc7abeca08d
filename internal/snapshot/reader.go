package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Reader reads and checks one snapshot file (the package doc lists what
// it refuses). Next returns the records; io.EOF only once the trailer and
// the end of the file were checked: a caller that stops at any other
// error has read a file it must not trust.
type Reader struct {
	r      *bufio.Reader
	lim    Limits
	h      Header
	sum    hash.Hash32
	keys   uint64
	last   string
	done   bool
	err    error // the first error Next returned: every later call returns it
	recBuf bytes.Buffer
}

// NewReader reads and checks the header. A zero field of lim takes
// DefaultLimits's.
func NewReader(r io.Reader, lim Limits) (*Reader, error) {
	if lim.MaxKeyBytes <= 0 {
		lim.MaxKeyBytes = DefaultLimits.MaxKeyBytes
	}
	if lim.MaxValueBytes <= 0 {
		lim.MaxValueBytes = DefaultLimits.MaxValueBytes
	}
	rd := &Reader{r: bufio.NewReaderSize(r, 256<<10), lim: lim, sum: crc32.New(castagnoli)}
	if err := rd.readHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

// Header returns the header read by NewReader.
func (r *Reader) Header() Header { return r.h }

func (r *Reader) readHeader() error {
	fixed := make([]byte, fixedHeaderBytes)
	if n, err := io.ReadFull(r.r, fixed[:8]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if n > 0 && string(fixed[:n]) == magic[:n] {
				return ErrTruncated
			}
			return fmt.Errorf("%w: %d bytes", ErrNotSnapshot, n)
		}
		return err
	}
	if string(fixed[:8]) != magic {
		return ErrNotSnapshot
	}
	if err := r.full(fixed[8:]); err != nil {
		return err
	}
	if f := binary.BigEndian.Uint16(fixed[8:]); f != Format {
		return fmt.Errorf("%w %d: this binary reads format %d", ErrUnknownFormat, f, Format)
	}
	if fl := binary.BigEndian.Uint16(fixed[10:]); fl != 0 {
		return corruptf("header flags %#x, want 0", fl)
	}
	n := binary.BigEndian.Uint32(fixed[28:])
	if n > MaxInfoBytes {
		return corruptf("header info of %d bytes, over %d", n, MaxInfoBytes)
	}
	rest := make([]byte, int(n)+4)
	if err := r.full(rest); err != nil {
		return err
	}
	info := rest[:n]
	crc := crc32.Update(crc32.Checksum(fixed, castagnoli), castagnoli, info)
	if got := binary.BigEndian.Uint32(rest[n:]); got != crc {
		return corruptf("header checksum %#08x, computed %#08x", got, crc)
	}
	r.h = Header{Format: Format, Keys: binary.BigEndian.Uint64(fixed[12:]), VersionBound: binary.BigEndian.Uint64(fixed[20:])}
	dec := json.NewDecoder(bytes.NewReader(info))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.h.Info); err != nil {
		return corruptf("header info: %v", err)
	}
	if dec.More() {
		return corruptf("header info: data after the JSON object")
	}
	if r.h.Keys == 0 && r.h.VersionBound != 0 || r.h.Keys > 0 && r.h.VersionBound == 0 {
		return corruptf("header says %d keys with version bound %d", r.h.Keys, r.h.VersionBound)
	}
	return nil
}

// full reads len(b) bytes; an early end is ErrTruncated.
func (r *Reader) full(b []byte) error {
	if _, err := io.ReadFull(r.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrTruncated
		}
		return err
	}
	return nil
}

// byteCRC reads one byte into the record being checked.
func (r *Reader) byteCRC() (byte, error) {
	c, err := r.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, ErrTruncated
		}
		return 0, err
	}
	r.recBuf.WriteByte(c)
	return c, nil
}

// uvarint reads one varint into the record being checked.
func (r *Reader) uvarint() (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.byteCRC()
		if err != nil {
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, corruptf("a varint overflows 64 bits")
}

// bytesCRC reads n bytes (n at most limit) into the record being checked,
// growing with what arrives rather than with what n claims.
func (r *Reader) bytesCRC(n uint64, limit int, what string) ([]byte, error) {
	if n > uint64(limit) {
		return nil, corruptf("%s of %d bytes, over the limit of %d", what, n, limit)
	}
	start := r.recBuf.Len()
	if _, err := io.CopyN(&r.recBuf, r.r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return r.recBuf.Bytes()[start:], nil
}

// checkCRC reads the 4-byte checksum of the record in recBuf.
func (r *Reader) checkCRC(what string) error {
	var b [4]byte
	if err := r.full(b[:]); err != nil {
		return err
	}
	want := crc32.Checksum(r.recBuf.Bytes(), castagnoli)
	if got := binary.BigEndian.Uint32(b[:]); got != want {
		return corruptf("%s checksum %#08x, computed %#08x", what, got, want)
	}
	r.recBuf.Write(b[:])
	return nil
}

// Next returns the next record; its Value is the caller's. io.EOF: the
// file ended as it should, every record and the whole checked.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
	}
	return rec, err
}

func (r *Reader) next() (Record, error) {
	if r.done {
		return Record{}, io.EOF
	}
	r.recBuf.Reset()
	tag, err := r.byteCRC()
	if err != nil {
		return Record{}, err
	}
	switch tag {
	case tagRecord:
		return r.record()
	case tagTrailer:
		return Record{}, r.trailer()
	}
	return Record{}, corruptf("record %d: tag %#02x", r.keys+1, tag)
}

func (r *Reader) record() (Record, error) {
	n := r.keys + 1
	kl, err := r.uvarint()
	if err != nil {
		return Record{}, err
	}
	key, err := r.bytesCRC(kl, r.lim.MaxKeyBytes, "a key")
	if err != nil {
		return Record{}, err
	}
	rec := Record{Key: string(key)}
	if rec.Version, err = r.uvarint(); err != nil {
		return Record{}, err
	}
	vl, err := r.uvarint()
	if err != nil {
		return Record{}, err
	}
	value, err := r.bytesCRC(vl, r.lim.MaxValueBytes, "a value")
	if err != nil {
		return Record{}, err
	}
	rec.Value = bytes.Clone(value)
	if err := r.checkCRC(fmt.Sprintf("record %d", n)); err != nil {
		return Record{}, err
	}
	switch {
	case rec.Key == "":
		return Record{}, corruptf("record %d: an empty key", n)
	case r.keys > 0 && rec.Key <= r.last:
		return Record{}, corruptf("record %d: key %q after %q (keys must rise strictly)", n, rec.Key, r.last)
	case rec.Version == 0 || rec.Version > r.h.VersionBound:
		return Record{}, corruptf("record %d: version %d outside 1..%d (the header's bound)", n, rec.Version, r.h.VersionBound)
	case n > r.h.Keys:
		return Record{}, corruptf("record %d: the header says %d keys", n, r.h.Keys)
	}
	r.sum.Write(r.recBuf.Bytes())
	r.keys, r.last = n, rec.Key
	return rec, nil
}

func (r *Reader) trailer() error {
	keys, err := r.uvarint()
	if err != nil {
		return err
	}
	bound, err := r.uvarint()
	if err != nil {
		return err
	}
	r.sum.Write(r.recBuf.Bytes())
	var b [4]byte
	if err := r.full(b[:]); err != nil {
		return err
	}
	switch {
	case binary.BigEndian.Uint32(b[:]) != r.sum.Sum32():
		return corruptf("file checksum %#08x, computed %#08x", binary.BigEndian.Uint32(b[:]), r.sum.Sum32())
	case keys != r.h.Keys || bound != r.h.VersionBound:
		return corruptf("the trailer says %d keys and bound %d, the header %d and %d", keys, bound, r.h.Keys, r.h.VersionBound)
	case r.keys != keys:
		return corruptf("%d records, the trailer says %d", r.keys, keys)
	}
	if _, err := r.r.ReadByte(); err == nil {
		return corruptf("data after the trailer")
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	r.done = true
	return io.EOF
}
