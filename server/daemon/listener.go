package daemon

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// splitListener serves gRPC and HTTP/1 on one address: it reads the first
// bytes of each connection and hands it to the gRPC listener when they are
// the HTTP/2 client preface ("PRI * HTTP/2.0"), to the HTTP listener
// otherwise. (gRPC's net/http bridge would avoid this, at a large cost in
// throughput.)
type splitListener struct {
	l     net.Listener
	grpc  *chanListener
	http  *chanListener
	sniff time.Duration
}

func newSplitListener(l net.Listener) *splitListener {
	s := &splitListener{l: l, grpc: newChanListener(l.Addr()), http: newChanListener(l.Addr()), sniff: 10 * time.Second}
	go s.run()
	return s
}

func (s *splitListener) run() {
	for {
		conn, err := s.l.Accept()
		if err != nil {
			s.grpc.close(err)
			s.http.close(err)
			return
		}
		go s.route(conn)
	}
}

var http2Preface = []byte("PRI")

func (s *splitListener) route(conn net.Conn) {
	head := make([]byte, len(http2Preface))
	_ = conn.SetReadDeadline(time.Now().Add(s.sniff))
	n, err := io.ReadFull(conn, head)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return
	}
	c := &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(head[:n]), conn)}
	if bytes.Equal(head, http2Preface) {
		s.grpc.push(c)
	} else {
		s.http.push(c)
	}
}

// Close closes the underlying listener, which ends both halves.
func (s *splitListener) Close() error { return s.l.Close() }

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by splitListener.
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
