package client

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/faultproxy"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestWriteRetriedWithItsRequestID: a write applied by the cluster whose
// answer is lost (the node goes silent after applying it) ends with an
// unknown outcome on its first attempt; the client sends it again, with
// the same request ID, to the other endpoint, which answers with the
// first outcome: the caller sees success, and the increment is applied
// once. Without request IDs the same write ends with ErrUnknownOutcome.
func TestWriteRetriedWithItsRequestID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noIDs  bool
		wantN  int64
		wantOK bool
	}{
		{"with request IDs", false, 1, true},
		{"without", true, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := clientapitest.New()
			first, _ := clientapitest.ServeGRPC(t, b)
			second, _ := clientapitest.ServeGRPC(t, b) // the same store behind another node
			proxy, err := faultproxy.New("127.0.0.1:0", first)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			c, err := New(Config{Endpoints: []string{proxy.Addr(), second}, NoRouting: true, NoRequestIDs: tc.noIDs})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "other", []byte("v")); err != nil { // connects through the proxy
				t.Fatal(err)
			}
			seen, release := b.HoldWrites()
			done := make(chan error, 1)
			var n int64
			go func() {
				call, cancelCall := context.WithTimeout(ctx, 3*time.Second)
				defer cancelCall()
				var err error
				n, _, err = c.Increment(call, "n", 1)
				done <- err
			}()
			<-seen                     // the write reached the store through the proxy ...
			proxy.Cut(faultproxy.Hang) // ... whose node then goes silent ...
			release()                  // ... after applying it
			err = <-done
			if tc.wantOK && (err != nil || n != tc.wantN) {
				t.Fatalf("increment: %d, %v; want %d after a retry", n, err, tc.wantN)
			}
			if !tc.wantOK && !errors.Is(err, ErrUnknownOutcome) {
				t.Fatalf("increment: %v, want unknown outcome", err)
			}
			got, err := c.Get(ctx, "n")
			if err != nil || string(got.Data) != "1" {
				t.Fatalf("n is %q (%v), want 1: applied once", got.Data, err)
			}
		})
	}
}

// TestOutcome: the outcome query over gRPC says applied, with the version,
// for a write the store applied, and not applied for one it never saw,
// which it then refuses.
func TestOutcome(t *testing.T) {
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, _ := kv.NewRequestID(time.Now(), rand.Reader)
	if applied, _, err := c.Outcome(ctx, "k", id); err != nil || applied {
		t.Fatalf("outcome of an unknown ID: %v, %v; want not applied", applied, err)
	}
	if _, _, err := c.Outcome(ctx, "k", "not-a-uuid"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("outcome of a bad ID: %v", err)
	}
	v, err := c.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	// The client's own IDs are not exposed; the server's answer to a
	// known one is checked in clientapi's tests. Here: an ID declared not
	// applied stays so.
	if applied, _, err := c.Outcome(ctx, "k", id); err != nil || applied {
		t.Fatalf("asked again: %v, %v", applied, err)
	}
	if v != 1 {
		t.Fatalf("put: version %d", v)
	}
}

// overloaded refuses every operation as an overloaded node does.
type overloaded struct{ *clientapitest.Backend }

func (overloaded) Do(context.Context, kv.Op) (protocol.State, error) {
	return protocol.State{}, kv.ErrOverloaded
}

// TestRefusalAfterUnknownOutcome: a write whose first attempt was applied
// with its answer lost, and whose retries are refused as overloaded (or
// find no endpoint), ends with an unknown outcome, never with a refusal
// that says nothing was applied.
func TestRefusalAfterUnknownOutcome(t *testing.T) {
	b := clientapitest.New()
	first, _ := clientapitest.ServeGRPC(t, b)
	second, _ := clientapitest.ServeGRPC(t, overloaded{b})
	proxy, err := faultproxy.New("127.0.0.1:0", first)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	c, err := New(Config{Endpoints: []string{proxy.Addr(), second}, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "other", []byte("v")); err != nil { // connects through the proxy
		t.Fatal(err)
	}
	seen, release := b.HoldWrites()
	done := make(chan error, 1)
	go func() {
		call, cancelCall := context.WithTimeout(ctx, 3*time.Second)
		defer cancelCall()
		_, _, err := c.Increment(call, "n", 1)
		done <- err
	}()
	<-seen
	proxy.Cut(faultproxy.Reset) // the connection breaks with the write in flight ...
	release()                   // ... which is applied
	if err := <-done; !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrOverloaded) {
		t.Fatalf("increment applied, its answer lost, its retries refused: %v; want an unknown outcome", err)
	}
}
