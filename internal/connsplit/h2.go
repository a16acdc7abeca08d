package connsplit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 with prior knowledge, two protocols on it.
//
// gRPC and HTTP/2 cleartext (h2c) both open a connection with the HTTP/2
// client preface, so the first bytes cannot tell them apart; the first
// request's content-type can ("application/grpc..."). NewH2 reads that
// far, and the server side must have spoken first: a gRPC client (grpc-go
// among them) waits for the server's SETTINGS frame before it sends a
// request. So the split writes one empty SETTINGS frame (every setting at
// its default: it changes nothing), reads the client's frames up to its
// first HEADERS, decodes their header block, and hands the connection
// over, every byte read replayed, to the server that owns it. That server
// then sends SETTINGS of its own, so the client sees two and acknowledges
// both; grpc-go ignores an acknowledgement it did not ask for, but Go's
// HTTP/2 server refuses one (PROTOCOL_ERROR). A connection for Other
// therefore has the client's first SETTINGS acknowledgement, which is the
// one of the split's frame (it was the first the client got), taken out of
// its stream (ackFilter).
//
// A client that sends no request within the wait, or pings before its
// first request, is taken for gRPC: a gRPC client connects ahead of its
// first call and may stay idle, pinging to keep the connection (grpc-go's
// keepalive: an unanswered ping closes it), while an HTTP client connects
// to send a request.

// maxSniffFrames bounds the frames read before the first HEADERS (SETTINGS,
// WINDOW_UPDATE, PING, PRIORITY): a client that sends more is closed.
const maxSniffFrames = 32

// maxSniffHeaderBytes bounds the first request's decoded header list.
const maxSniffHeaderBytes = 64 << 10

// emptySettings is a SETTINGS frame with no settings: length 0, type 4,
// no flags, stream 0.
var emptySettings = []byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}

// NewH2 splits connections that begin with the HTTP/2 client preface
// (what New hands its Match for the prefix "PRI") by their first request:
// to Match if match says so of its content-type, else to Other, which
// must be served by an HTTP/2 server that speaks first (Go's, with
// unencrypted HTTP/2 on). A connection that sends no request within wait
// goes to Match; one that breaks the protocol before it, or is not HTTP/2,
// is closed.
func NewH2(l net.Listener, wait time.Duration, match func(contentType string) bool) *Listener {
	s := &Listener{l: l, sniff: wait, match: newChanListener(l.Addr()), other: newChanListener(l.Addr())}
	s.Match, s.Other = s.match, s.other
	s.route = func(conn net.Conn) { s.h2Route(conn, match) }
	go s.run()
	return s
}

func (s *Listener) h2Route(conn net.Conn, match func(string) bool) {
	deadline := time.Now().Add(s.sniff)
	_ = conn.SetDeadline(deadline)
	var seen bytes.Buffer
	r := io.TeeReader(conn, &seen)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(r, preface); err != nil || string(preface) != http2.ClientPreface {
		conn.Close()
		return
	}
	if _, err := conn.Write(emptySettings); err != nil {
		conn.Close()
		return
	}
	contentType, err := firstContentType(r)
	_ = conn.SetDeadline(time.Time{})
	var timeout net.Error
	switch {
	case errors.As(err, &timeout) && timeout.Timeout(), errors.Is(err, errPinged):
		// Idle: a gRPC client ahead of its first call.
		s.match.push(&prefixConn{Conn: conn, r: io.MultiReader(&seen, conn)})
		return
	case err != nil:
		conn.Close()
		return
	}
	replay := io.MultiReader(&seen, conn)
	if match(contentType) {
		s.match.push(&prefixConn{Conn: conn, r: replay})
		return
	}
	s.other.push(&prefixConn{Conn: conn, r: newAckFilter(replay)})
}

// errPinged: the client pinged before its first request.
var errPinged = errors.New("caspaxos/connsplit: a PING before the first request")

// firstContentType reads frames after the preface up to the first HEADERS
// (and its CONTINUATIONs) and returns its content-type ("" if none), or
// errPinged at a PING before it.
func firstContentType(r io.Reader) (string, error) {
	fr := http2.NewFramer(nil, r)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = maxSniffHeaderBytes
	for range maxSniffFrames {
		f, err := fr.ReadFrame()
		if err != nil {
			return "", err
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			return "", errPinged
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			continue
		}
		for _, hf := range h.Fields {
			if hf.Name == "content-type" {
				return hf.Value, nil
			}
		}
		return "", nil
	}
	return "", errors.New("caspaxos/connsplit: no HTTP/2 request within the first frames")
}

// ackFilter passes an HTTP/2 client's byte stream through, except the
// first SETTINGS frame with the ACK flag, which it drops (see NewH2).
// Until then it reads frame by frame; after it, it only copies.
type ackFilter struct {
	r       *bufio.Reader
	pending []byte // bytes of the current frame header still to return
	left    int    // payload bytes of the current frame still to return
	prefix  int    // bytes of the client preface still to return
	dropped bool
	hdr     [9]byte
}

func newAckFilter(r io.Reader) *ackFilter {
	return &ackFilter{r: bufio.NewReader(r), prefix: len(http2.ClientPreface)}
}

func (a *ackFilter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	switch {
	case a.dropped:
		return a.r.Read(p)
	case a.prefix > 0:
		n, err := a.r.Read(p[:min(len(p), a.prefix)])
		a.prefix -= n
		return n, err
	case len(a.pending) > 0:
		n := copy(p, a.pending)
		a.pending = a.pending[n:]
		return n, nil
	case a.left > 0:
		n, err := a.r.Read(p[:min(len(p), a.left)])
		a.left -= n
		return n, err
	}
	if _, err := io.ReadFull(a.r, a.hdr[:]); err != nil {
		return 0, err
	}
	length := int(binary.BigEndian.Uint32(a.hdr[:4]) >> 8)
	typ, flags := http2.FrameType(a.hdr[3]), http2.Flags(a.hdr[4])
	if typ == http2.FrameSettings && flags.Has(http2.FlagSettingsAck) && length == 0 {
		a.dropped = true
		return a.r.Read(p)
	}
	a.pending, a.left = a.hdr[:], length
	n := copy(p, a.pending)
	a.pending = a.pending[n:]
	return n, nil
}
