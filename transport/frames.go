package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/internal/connsplit"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Peer links are plain TCP connections on the peer port, beside gRPC (which
// serves the Admin and GC services there). A gRPC stream cost every frame
// hand-offs between goroutines on both ends (the sender's loopy writer, the
// receiver's stream buffer) and flow-control frames back; a frame here is
// one write by the link's goroutine and one read by the receiving one.
//
// A connection begins with framePreface from the dialing node. Its first
// three bytes tell it from gRPC's HTTP/2 preface ("PRI"), the rest name the
// framing's version; the receiver answers with the same preface, so a link
// counts as up only once a peer that speaks this version answered. Then
// frames follow, each a 4-byte big-endian length and a peerpb.Frame.
var framePreface = []byte("CPXF\x01")

const (
	// sniffBytes is how much of the preface tells frames from gRPC.
	sniffBytes = 3
	// maxFrameBytes bounds a frame a receiver accepts.
	maxFrameBytes = 64 << 20
	// writeTimeout bounds one frame's write: a peer that reads nothing for
	// that long (a hung connection whose buffers are full) loses its link,
	// which reconnects.
	writeTimeout = 2 * time.Second
)

// idleTimeout is how long a receiving connection may go without a frame:
// ten times DeadAfter (3 s by default), well past any heartbeat.
func (t *Transport) idleTimeout() time.Duration { return 10 * t.cfg.DeadAfter }

// errFrameTooLarge: a frame's length header exceeds maxFrameBytes.
var errFrameTooLarge = errors.New("caspaxos/transport: frame too large")

// appendFrame appends f's length header and encoding to buf.
func appendFrame(buf []byte, f *peerpb.Frame) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, f)
	if err != nil {
		return buf[:start], err
	}
	n := len(buf) - start - 4
	if n > maxFrameBytes {
		return buf[:start], fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	return buf, nil
}

// readFrame reads one frame from r into f, using body as scratch space (it
// returns the possibly grown scratch). Unmarshal copies what f keeps.
func readFrame(r *bufio.Reader, body []byte, f *peerpb.Frame) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return body, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxFrameBytes {
		return body, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	if cap(body) < int(n) {
		body = make([]byte, n)
	}
	body = body[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return body, err
	}
	return body, proto.Unmarshal(body, f)
}

// Serve serves the peer port on lis: peer links' connections here, every
// other connection (gRPC: the Admin and GC services) on s. It returns at
// once; Close stops it and closes lis.
func (t *Transport) Serve(lis net.Listener, s *grpc.Server) {
	split := connsplit.New(lis, framePreface[:sniffBytes], dialTimeout)
	t.connMu.Lock()
	t.listeners = append(t.listeners, split)
	closed := t.ctx.Err() != nil
	t.connMu.Unlock()
	if closed {
		split.Close()
	}
	go func() { _ = s.Serve(split.Other) }()
	go func() {
		for {
			conn, err := split.Match.Accept()
			if err != nil {
				return
			}
			go t.serveConn(conn)
		}
	}()
}

// serveConn receives one peer's frames until the connection fails, the
// peer proves not to be a member, or the transport closes.
func (t *Transport) serveConn(conn net.Conn) {
	if !t.track(conn) {
		return
	}
	defer t.untrack(conn)
	r := bufio.NewReaderSize(conn, 64<<10)
	head := make([]byte, len(framePreface))
	_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
	if _, err := io.ReadFull(r, head); err != nil {
		return
	}
	if !bytes.Equal(head, framePreface) {
		t.cfg.Logger.Warn("refused a peer connection of an unknown framing version (a node of another release?)",
			"remote", conn.RemoteAddr().String(), "preface", fmt.Sprintf("%q", head), "want", fmt.Sprintf("%q", framePreface))
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write(framePreface); err != nil {
		return
	}
	var (
		body []byte
		err  error
		out  []byte
	)
	for {
		f := &peerpb.Frame{}
		// A live link sends a frame at least every Heartbeat; one silent
		// for idleTimeout is gone (half-open), and holds its buffer.
		_ = conn.SetReadDeadline(time.Now().Add(t.idleTimeout()))
		if body, err = readFrame(r, body, f); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.cfg.Logger.Debug("peer connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		if err := t.frame(f); err != nil {
			t.cfg.Logger.Warn("refused a peer's frames", "remote", conn.RemoteAddr().String(), "err", err)
			return
		}
		if f.GetPing() != 0 {
			if out, err = appendFrame(out[:0], &peerpb.Frame{From: uint64(t.cfg.Self), Pong: f.GetPing()}); err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	}
}

// frame takes one frame received from a peer.
func (t *Transport) frame(f *peerpb.Frame) error {
	from := protocol.NodeID(f.GetFrom())
	ps := t.set()
	heard := ps.heard[from]
	if heard == nil {
		return fmt.Errorf("caspaxos/transport: node %d is not a member", from)
	}
	t.markHeard(heard)
	if f.GetLeaving() && !ps.gone[from].Swap(true) {
		// Acknowledge on our own link, behind any forward queued there.
		ps.links[from].poke()
	} else if !f.GetLeaving() {
		ps.gone[from].Store(false)
	}
	if f.GetAcksLeaving() {
		ps.acked[from]()
	}
	t.receive(from, f)
	return nil
}

// track records an accepted connection so that Close can end it; false if
// the transport is already closed (the connection is then closed).
func (t *Transport) track(conn net.Conn) bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if t.ctx.Err() != nil {
		conn.Close()
		return false
	}
	t.conns[conn] = struct{}{}
	return true
}

func (t *Transport) untrack(conn net.Conn) {
	t.connMu.Lock()
	delete(t.conns, conn)
	t.connMu.Unlock()
	conn.Close()
}

// closeServing closes the listeners Serve was given and every connection
// they accepted.
func (t *Transport) closeServing() {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	for _, l := range t.listeners {
		l.Close()
	}
	for c := range t.conns {
		c.Close()
	}
}
