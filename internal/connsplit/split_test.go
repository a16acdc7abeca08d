package connsplit

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestSplit(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, []byte("ABC"), 200*time.Millisecond)
	defer s.Close()
	for _, tc := range []struct {
		name, send string
		want       net.Listener
	}{
		{"prefix", "ABCdef", s.Match},
		{"other", "ABxdef", s.Other},
		{"short and other", "xyz", s.Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			got, err := tc.want.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			_ = got.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, len(tc.send))
			if _, err := io.ReadFull(got, b); err != nil || string(b) != tc.send {
				t.Fatalf("read %q, %v; want the whole %q", b, err, tc.send)
			}
		})
	}

	// A connection that sends nothing is closed once sniff is over.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a silent connection: %v, want it closed", err)
	}

	// Closing one half leaves the other; closing the listener ends both.
	if err := s.Match.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Match.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept on a closed half: %v", err)
	}
	s.Close()
	if _, err := s.Other.Accept(); err == nil {
		t.Fatal("accept after the listener closed")
	}
}

// flaky fails its first Accept as a listener out of file descriptors does.
type flaky struct {
	net.Listener
	failed bool
}

func (f *flaky) Accept() (net.Conn, error) {
	if !f.failed {
		f.failed = true
		return nil, errors.New("accept: too many open files")
	}
	return f.Listener.Accept()
}

// An Accept error other than a closed listener does not end the halves.
func TestSplitSurvivesAcceptErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(&flaky{Listener: l}, []byte("AB"), time.Second)
	defer s.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("AB")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Match.Accept()
	if err != nil {
		t.Fatalf("after an accept error: %v", err)
	}
	got.Close()
}

// NewTLS runs at most maxHandshakes handshakes at once: a connection past
// them is closed at once and reported as ErrTooManyHandshakes, without a
// handshake; a slot freed by a handshake that ended serves the next one.
func TestTLSHandshakesBounded(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 8)
	s := NewTLS(lis, &tls.Config{}, time.Minute, 2, func(tls.ConnectionState) bool { return true },
		func(_ net.Conn, err error) { refused <- err })
	defer s.Close()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func() error {
		t.Helper()
		select {
		case err := <-refused:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("no connection refused within 10s")
			return nil
		}
	}
	// Two silent connections hold both slots for the minute of their
	// handshakes' timeout.
	silent := dial()
	dial()
	third := dial()
	if err := next(); !errors.Is(err, ErrTooManyHandshakes) {
		t.Fatalf("the third connection: %v, want ErrTooManyHandshakes", err)
	}
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := third.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the third connection was not closed: read %d, %v", n, err)
	}
	silent.Close()
	if err := next(); err == nil || errors.Is(err, ErrTooManyHandshakes) {
		t.Fatalf("a silent connection closed: %v, want its handshake's failure", err)
	}
	// Its slot is free: the next connection's handshake is tried (and
	// fails, since it is not TLS).
	fourth := dial()
	if _, err := fourth.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := next(); err == nil || errors.Is(err, ErrTooManyHandshakes) {
		t.Fatalf("the fourth connection: %v, want a failed handshake", err)
	}
}
