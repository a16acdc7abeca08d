// Package servertest holds what the tests of the server's packages share:
// a logger that writes to the test's log, a wait on a condition with a
// deadline, and a Transport that records what is sent. Only tests import
// it (internal/arch checks).
package servertest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Logger returns a logger that writes warnings and errors to t's log.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// WaitFor polls cond until it holds, failing the test after a deadline.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Ctx returns a context that ends after d or with the test.
func Ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Recorder is a Transport that hands what is sent to Next, in order.
type Recorder struct {
	mu sync.Mutex
	// Check, if set, is called with every batch before it is recorded.
	Check func(to protocol.NodeID, msgs []protocol.Message)
	ch    chan []protocol.Message
}

// NewRecorder returns an empty Recorder that holds up to 1024 batches
// nobody took yet.
func NewRecorder() *Recorder { return NewRecorderSize(1024) }

// NewRecorderSize returns an empty Recorder that holds up to n batches
// nobody took yet; a Send past them blocks.
func NewRecorderSize(n int) *Recorder { return &Recorder{ch: make(chan []protocol.Message, n)} }

// Pending returns every batch sent that nobody took yet, without waiting.
func (r *Recorder) Pending() [][]protocol.Message {
	var out [][]protocol.Message
	for {
		select {
		case msgs := <-r.ch:
			out = append(out, msgs)
		default:
			return out
		}
	}
}

func (r *Recorder) Send(to protocol.NodeID, msgs []protocol.Message) error {
	if r.Check != nil {
		r.Check(to, msgs)
	}
	r.ch <- msgs
	return nil
}

// Next returns the next batch sent, failing the test after a deadline.
func (r *Recorder) Next(t *testing.T) []protocol.Message {
	t.Helper()
	select {
	case msgs := <-r.ch:
		return msgs
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a send")
		return nil
	}
}

// NextN returns the next n replies, however many sends carry them.
func (r *Recorder) NextN(t *testing.T, n int) []protocol.Message {
	t.Helper()
	var out []protocol.Message
	for len(out) < n {
		out = append(out, r.Next(t)...)
	}
	if len(out) > n {
		t.Fatalf("got %d replies, want %d: %v", len(out), n, out)
	}
	return out
}

// None fails the test if a batch was sent that nobody took yet.
func (r *Recorder) None(t *testing.T, why string) {
	t.Helper()
	select {
	case msgs := <-r.ch:
		t.Fatalf("%s, but sent %v", why, msgs)
	default:
	}
}
