package connsplit

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"golang.org/x/net/http2"
)

// FuzzAckFilter: whatever a client sends, the filter passes its bytes
// through unchanged except the first SETTINGS acknowledgement frame, as a
// plain walk over the frames finds it (wantFiltered), and a stream that
// ends inside a frame header ends there.
func FuzzAckFilter(f *testing.F) {
	ack := []byte{0, 0, 0, 0x4, 0x1, 0, 0, 0, 0}
	ping := []byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	p := []byte(http2.ClientPreface)
	f.Add(p)
	f.Add(append(append(append(bytes.Clone(p), emptySettings...), ack...), ping...))
	f.Add(append(append(append(bytes.Clone(p), ping...), ack...), ack...))
	f.Add(append(bytes.Clone(p), 0, 0, 9, 0x4, 0x1, 0, 0, 0, 0)) // an ACK with a payload: not the one
	f.Add(append(bytes.Clone(p), 0, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := wantFiltered(in)
		got, err := io.ReadAll(newAckFilter(bytes.NewReader(in)))
		if !bytes.Equal(got, want) || (err != nil) != wantErr {
			t.Fatalf("in %x:\ngot  %x, %v\nwant %x, error %v", in, got, err, want, wantErr)
		}
	})
}

// wantFiltered is the filter's output by a walk over whole frames: the
// preface, then frame after frame until the first SETTINGS frame with the
// ACK flag and no payload, which is left out. A frame header cut short
// ends the output (with an error) before it.
func wantFiltered(in []byte) ([]byte, bool) {
	n := len(http2.ClientPreface)
	if len(in) <= n {
		return in, false
	}
	for o := n; o < len(in); {
		if len(in)-o < 9 {
			return in[:o], true
		}
		length := int(binary.BigEndian.Uint32(in[o:o+4]) >> 8)
		if in[o+3] == 0x4 && in[o+4]&0x1 != 0 && length == 0 {
			return append(bytes.Clone(in[:o]), in[o+9:]...), false
		}
		o += 9 + length
	}
	return in, false
}

// FuzzFirstContentType: the sniffer's frame reader takes any bytes after
// the preface without panicking, and ends with an answer or an error.
func FuzzFirstContentType(f *testing.F) {
	f.Add([]byte{})
	f.Add(emptySettings)
	f.Add([]byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	// HEADERS on stream 1, END_HEADERS, with a literal content-type.
	block := []byte{0x5f, 0x10}
	block = append(block, "application/grpc"...)
	f.Add(append([]byte{0, 0, byte(len(block)), 0x1, 0x4, 0, 0, 0, 1}, block...))
	f.Fuzz(func(t *testing.T, in []byte) {
		ct, err := firstContentType(bytes.NewReader(in))
		if err == nil && len(ct) > maxSniffHeaderBytes {
			t.Fatalf("a content-type of %d bytes", len(ct))
		}
		if err != nil && ct != "" {
			t.Fatalf("content-type %q with error %v", ct, err)
		}
	})
}
