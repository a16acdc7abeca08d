// Package connsplit serves two protocols on one listening address: it reads
// the first bytes of every accepted connection and hands the connection
// (those bytes included) to one of two listeners by whether they match a
// prefix; or, over TLS (NewTLS), it completes each connection's handshake
// and hands on the *tls.Conn by the protocol the handshake negotiated
// (ALPN).
package connsplit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Listener splits the connections of one net.Listener between Match (their
// first bytes are the prefix) and Other (anything else).
type Listener struct {
	l      net.Listener
	prefix []byte
	sniff  time.Duration
	// Match gets the connections that begin with the prefix, Other the rest.
	Match, Other net.Listener
	match, other *chanListener
	route        func(net.Conn) // s.sniffRoute or a TLS handshake's
	// handshakes holds a slot per TLS handshake under way (NewTLS with a
	// bound; nil: unbounded), refused is told of the connections closed.
	handshakes chan struct{}
	refused    func(net.Conn, error)
}

// ErrTooManyHandshakes: NewTLS closed a connection at once, since
// maxHandshakes handshakes were under way.
var ErrTooManyHandshakes = errors.New("caspaxos/connsplit: too many TLS handshakes under way")

// New starts splitting l's connections by prefix. A connection that does not
// send len(prefix) bytes within sniff is closed; the sniffing happens on the
// connection's own goroutine, so a silent client holds up no other.
func New(l net.Listener, prefix []byte, sniff time.Duration) *Listener {
	s := &Listener{l: l, prefix: bytes.Clone(prefix), sniff: sniff,
		match: newChanListener(l.Addr()), other: newChanListener(l.Addr())}
	s.Match, s.Other = s.match, s.other
	s.route = s.sniffRoute
	go s.run()
	return s
}

// NewTLS serves TLS only on l: each accepted connection's handshake (with
// cfg) must end within timeout, on the connection's own goroutine; then the
// *tls.Conn itself goes to Match if match says so of its state, else to
// Other. A connection whose handshake fails (plain text, a certificate
// refused) is closed, and reported to refused if it is not nil.
//
// At most maxHandshakes handshakes run at once (0: no bound): past it, a
// new connection is closed at once and reported with ErrTooManyHandshakes.
// Whoever can reach the port can hold a handshake open for timeout by
// sending nothing, and each holds a goroutine and a file descriptor; a
// bound keeps that from growing without end.
func NewTLS(l net.Listener, cfg *tls.Config, timeout time.Duration, maxHandshakes int, match func(tls.ConnectionState) bool,
	refused func(net.Conn, error)) *Listener {
	s := &Listener{l: l, sniff: timeout, match: newChanListener(l.Addr()), other: newChanListener(l.Addr()), refused: refused}
	if maxHandshakes > 0 {
		s.handshakes = make(chan struct{}, maxHandshakes)
	}
	s.Match, s.Other = s.match, s.other
	s.route = func(conn net.Conn) {
		tc := tls.Server(conn, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if s.handshakes != nil {
			<-s.handshakes // before anything that may wait: push waits for an Accept
		}
		if err != nil {
			s.refuse(conn, err)
			return
		}
		if match(tc.ConnectionState()) {
			s.match.push(tc)
		} else {
			s.other.push(tc)
		}
	}
	go s.run()
	return s
}

// refuse closes conn, and reports it with err to the refused callback.
func (s *Listener) refuse(conn net.Conn, err error) {
	if s.refused != nil {
		s.refused(conn, err)
	}
	conn.Close()
}

func (s *Listener) run() {
	var delay time.Duration
	for {
		conn, err := s.l.Accept()
		switch {
		case errors.Is(err, net.ErrClosed):
			s.match.close(err)
			s.other.close(err)
			return
		case err != nil:
			// Out of file descriptors, a connection reset before it was
			// accepted, ...: the listener is still good. Wait a little
			// longer each time, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s.handshakes != nil {
			// Taken here, in accept order, and not on the connection's
			// goroutine: a connection past the bound is closed without
			// one.
			select {
			case s.handshakes <- struct{}{}:
			default:
				s.refuse(conn, ErrTooManyHandshakes)
				continue
			}
		}
		go s.route(conn)
	}
}

func (s *Listener) sniffRoute(conn net.Conn) {
	head := make([]byte, len(s.prefix))
	_ = conn.SetReadDeadline(time.Now().Add(s.sniff))
	n, err := io.ReadFull(conn, head)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return
	}
	c := &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(head[:n]), conn)}
	if bytes.Equal(head, s.prefix) {
		s.match.push(c)
	} else {
		s.other.push(c)
	}
}

// Close closes the underlying listener, which ends both halves.
func (s *Listener) Close() error { return s.l.Close() }

// Addr is the underlying listener's address.
func (s *Listener) Addr() net.Addr { return s.l.Addr() }

// prefixConn replays the sniffed bytes before the rest of the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

// NetConn returns the connection under c (a *tls.Conn, on a TLS port).
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by Listener.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (c *chanListener) push(conn net.Conn) {
	select {
	case c.conns <- conn:
	case <-c.done:
		conn.Close()
	}
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case conn := <-c.conns:
		return conn, nil
	case <-c.done:
		return nil, c.err
	}
}

func (c *chanListener) close(err error) {
	c.once.Do(func() {
		if err == nil {
			err = net.ErrClosed
		}
		c.err = err
		close(c.done)
	})
}

// Close ends this half only; the shared listener stays open for the other.
func (c *chanListener) Close() error {
	c.close(net.ErrClosed)
	return nil
}

func (c *chanListener) Addr() net.Addr { return c.addr }
