package connsplit

import (
	"errors"
	"io"
	"net"
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
