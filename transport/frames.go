package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
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
//
// The receiver trusts nothing of a connection before its first frame names
// a member: that frame is read with a small bound (helloFrameBytes; a link
// sends a hello with no items first), later ones with MaxRecvFrameBytes;
// the connection stays bound to that member, and the members' connections
// and the unidentified ones are counted and bounded (Config). Every frame
// is checked whole before anything of it is delivered (check.go).
var framePreface = []byte("CPXF\x01")

const (
	// sniffBytes is how much of the preface tells frames from gRPC.
	sniffBytes = 3
	// helloFrameBytes bounds a connection's first frame, read before its
	// sender is known, and what a link reads back (pongs): frames of no
	// items, a few dozen bytes.
	helloFrameBytes = 1 << 10
	// writeTimeout bounds one frame's write: a peer that reads nothing for
	// that long (a hung connection whose buffers are full) loses its link,
	// which reconnects.
	writeTimeout = 2 * time.Second
)

// idleTimeout is how long a receiving connection may go without a frame:
// ten times DeadAfter (3 s by default), well past any heartbeat.
func (t *Transport) idleTimeout() time.Duration { return 10 * t.cfg.DeadAfter }

// errFrameTooLarge: a frame's length header exceeds the bound.
var errFrameTooLarge = errors.New("caspaxos/transport: frame too large")

// appendFrame appends f's length header and encoding to buf; a frame over
// limit bytes is refused.
func appendFrame(buf []byte, f *peerpb.Frame, limit int) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, f)
	if err != nil {
		return buf[:start], err
	}
	n := len(buf) - start - 4
	if n > limit {
		return buf[:start], fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, limit)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	return buf, nil
}

// readFrame reads one frame of at most limit bytes from r into f, using
// body as scratch space (it returns the possibly grown scratch). Unmarshal
// copies what f keeps. Nothing is allocated for a frame over limit.
func readFrame(r *bufio.Reader, body []byte, f *peerpb.Frame, limit int) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return body, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if uint64(n) > uint64(limit) {
		return body, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, limit)
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
//
// With Config.TLS, every connection must complete a TLS handshake (with a
// member's certificate, tls.go) before anything else is read; frames and
// gRPC are then told apart by ALPN.
func (t *Transport) Serve(lis net.Listener, s *grpc.Server) {
	var split *connsplit.Listener
	frames, grpcConns := func(l *connsplit.Listener) net.Listener { return l.Match }, func(l *connsplit.Listener) net.Listener { return l.Other }
	if t.cfg.TLS != nil {
		cfg, err := t.serverTLS()
		if err != nil {
			// Config.validate checked what ServerConfig needs.
			panic(err)
		}
		// Handshakes under way count as connections whose sender is not
		// known yet: MaxUnidentifiedConns bounds them too (a bound of
		// their own, before the one of track).
		split = connsplit.NewTLS(lis, cfg, dialTimeout, t.cfg.MaxUnidentifiedConns,
			func(cs tls.ConnectionState) bool { return cs.NegotiatedProtocol == "h2" }, t.refusedHandshake)
		frames, grpcConns = grpcConns, frames
	} else {
		split = connsplit.New(lis, framePreface[:sniffBytes], dialTimeout)
	}
	t.connMu.Lock()
	t.listeners = append(t.listeners, split)
	closed := t.ctx.Err() != nil
	t.connMu.Unlock()
	if closed {
		split.Close()
	}
	go func() { _ = s.Serve(grpcConns(split)) }()
	go func() {
		for {
			conn, err := frames(split).Accept()
			if err != nil {
				return
			}
			go t.serveConn(conn)
		}
	}()
}

// serveConn receives one peer's frames until the connection fails, the
// peer proves not to be a member or sends bad input, or the transport
// closes.
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
	// The first frame names the sender: small, and soon, or nothing.
	_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
	f := &peerpb.Frame{}
	body, err := readFrame(r, nil, f, helloFrameBytes)
	if err != nil {
		t.connEnded(conn, "peer connection ended before it named its sender", err)
		return
	}
	from := protocol.NodeID(f.GetFrom())
	if t.set().heard[from] == nil {
		t.cfg.Logger.Warn("refused a peer connection: its sender is not a member", "remote", conn.RemoteAddr().String(), "from", uint64(from))
		return
	}
	if err := t.checkHello(conn, from); err != nil {
		t.refusedConns.Add(1)
		t.cfg.Logger.Error("refused a peer connection: its certificate does not name the member its hello names",
			"remote", conn.RemoteAddr().String(), "from", uint64(from), "err", err)
		return
	}
	if !t.identify(conn, from) {
		return
	}
	var out []byte
	for {
		if err := t.frame(from, f); err != nil {
			t.cfg.Logger.Error("refused a peer's frame and dropped its connection", "remote", conn.RemoteAddr().String(), "peer", uint64(from), "err", err)
			return
		}
		if f.GetPing() != 0 {
			if out, err = appendFrame(out[:0], &peerpb.Frame{From: uint64(t.cfg.Self), Pong: f.GetPing()}, helloFrameBytes); err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
		f = &peerpb.Frame{}
		// A live link sends a frame at least every Heartbeat; one silent
		// for idleTimeout is gone (half-open), and holds its buffer.
		_ = conn.SetReadDeadline(time.Now().Add(t.idleTimeout()))
		if body, err = readFrame(r, body, f, t.cfg.MaxRecvFrameBytes); err != nil {
			t.connEnded(conn, "peer connection ended", err)
			return
		}
	}
}

// refusedLogInterval is how often at most a refused handshake on the peer
// port is logged as a warning; those in between are logged at debug level
// and counted in the next warning. Whoever reaches the port can fail
// handshakes as fast as it connects, and a warning each would flood the
// log.
const refusedLogInterval = 10 * time.Second

// refusedHandshake logs a connection to a TLS peer port whose handshake
// failed (plain text, a certificate of another CA, expired, or naming no
// member) or was not tried (too many under way).
func (t *Transport) refusedHandshake(conn net.Conn, err error) {
	t.refusedConns.Add(1)
	msg := "refused a peer connection: TLS handshake failed"
	if errors.Is(err, connsplit.ErrTooManyHandshakes) {
		msg = "refused a peer connection: too many TLS handshakes under way"
	}
	unlogged := t.refusedUnlogged.Add(1)
	at := int64(t.now().Sub(t.started)) + 1 // as markHeard
	last := t.refusedLoggedAt.Load()
	if last != 0 && time.Duration(at-last) < refusedLogInterval || !t.refusedLoggedAt.CompareAndSwap(last, at) {
		t.cfg.Logger.Debug(msg, "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	t.refusedUnlogged.Add(-unlogged)
	t.cfg.Logger.Warn(msg, "remote", conn.RemoteAddr().String(), "err", err, "refused_since_last_warning", unlogged-1)
}

// connEnded logs why a connection being read ended: a frame over its bound
// as a warning, anything but a plain close as a debug line.
func (t *Transport) connEnded(conn net.Conn, msg string, err error) {
	switch {
	case errors.Is(err, errFrameTooLarge):
		t.cfg.Logger.Warn(msg, "remote", conn.RemoteAddr().String(), "err", err)
	case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
		t.cfg.Logger.Debug(msg, "remote", conn.RemoteAddr().String(), "err", err)
	}
}

// frame takes one frame received on member sender's connection.
func (t *Transport) frame(sender protocol.NodeID, f *peerpb.Frame) error {
	if from := protocol.NodeID(f.GetFrom()); from != sender {
		return fmt.Errorf("%w: a frame from node %d on node %d's connection", errBadInput, from, sender)
	}
	ps := t.set()
	heard := ps.heard[sender]
	if heard == nil {
		return fmt.Errorf("caspaxos/transport: node %d is not a member", sender)
	}
	if err := t.check(sender, f); err != nil {
		return err
	}
	t.markHeard(heard)
	if f.GetLeaving() && !ps.gone[sender].Swap(true) {
		// Acknowledge on our own link, behind any forward queued there.
		ps.links[sender].poke()
	} else if !f.GetLeaving() {
		ps.gone[sender].Store(false)
	}
	if f.GetAcksLeaving() {
		ps.acked[sender]()
	}
	t.receive(sender, f)
	return nil
}

// track records an accepted connection so that Close can end it; false if
// the transport is already closed or MaxUnidentifiedConns connections wait
// to name their sender (the connection is then closed).
func (t *Transport) track(conn net.Conn) bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if t.ctx.Err() != nil {
		conn.Close()
		return false
	}
	if t.unidentified >= t.cfg.MaxUnidentifiedConns {
		t.refusedConns.Add(1) // before the close a caller may see
		conn.Close()
		t.cfg.Logger.Warn("refused a peer connection: too many connections have not named their sender",
			"remote", conn.RemoteAddr().String(), "limit", t.cfg.MaxUnidentifiedConns)
		return false
	}
	t.unidentified++
	t.conns[conn] = 0
	return true
}

// identify binds conn to member from. Past MaxConnsPerPeer connections of
// from, the oldest is closed: a link that reconnects replaces a connection
// this end has not yet seen die (it would only be closed after
// idleTimeout), and a peer cannot hold more. False if conn was closed
// meanwhile.
func (t *Transport) identify(conn net.Conn, from protocol.NodeID) bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if _, ok := t.conns[conn]; !ok || t.ctx.Err() != nil {
		return false
	}
	t.unidentified--
	t.conns[conn] = from
	t.byPeer[from] = append(t.byPeer[from], conn)
	if n := len(t.byPeer[from]); n > t.cfg.MaxConnsPerPeer {
		oldest := t.byPeer[from][0]
		t.byPeer[from] = slices.Delete(t.byPeer[from], 0, 1)
		t.refusedConns.Add(1)
		oldest.Close() // its serveConn ends and untracks it
		t.cfg.Logger.Info("closed a member's oldest peer connection: too many", "peer", uint64(from), "limit", t.cfg.MaxConnsPerPeer)
	}
	return true
}

func (t *Transport) untrack(conn net.Conn) {
	t.connMu.Lock()
	if from, ok := t.conns[conn]; ok {
		delete(t.conns, conn)
		if from == 0 {
			t.unidentified--
		} else if i := slices.Index(t.byPeer[from], conn); i >= 0 {
			t.byPeer[from] = slices.Delete(t.byPeer[from], i, i+1)
			if len(t.byPeer[from]) == 0 {
				delete(t.byPeer, from)
			}
		}
	}
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
