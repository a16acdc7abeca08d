package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/faultproxy"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestTypedErrorsAndFailover(t *testing.T) {
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{deadAddr(t), addr}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get absent: %v", err)
	}
	// The first endpoint is down before the write: moving on is safe.
	v, err := c.Put(ctx, "k", []byte("a"))
	if err != nil || v != 1 {
		t.Fatalf("put: %d %v", v, err)
	}
	_, err = c.CompareAndSwap(ctx, "k", 5, []byte("b"))
	var vm *VersionMismatchError
	if !errors.As(err, &vm) || vm.Current != 1 || !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("cas stale: %v", err)
	}
	if _, err := c.Create(ctx, "k", []byte("b")); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("create existing: %v", err)
	}
	if _, _, err := c.Increment(ctx, "k", 1); !errors.Is(err, ErrNotAnInteger) {
		t.Fatalf("increment text: %v", err)
	}
	if n, _, err := c.Increment(ctx, "n", 2); err != nil || n != 2 {
		t.Fatalf("increment: %d %v", n, err)
	}
	if _, err := c.Delete(ctx, "k", 3); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("delete stale: %v", err)
	}
	if v, err := c.Delete(ctx, "k", 0); err != nil || v != 2 {
		t.Fatalf("delete: %d %v", v, err)
	}
	if _, err := c.Put(ctx, "", nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestWriteInFlightWhenServerDiesIsUnknown(t *testing.T) {
	b := clientapitest.New()
	seen, release := b.HoldWrites()
	addr, s := clientapitest.ServeGRPC(t, b)
	second, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	// Without request IDs: with them, the client retries (idempotent_test.go).
	c, err := New(Config{Endpoints: []string{addr, second}, NoRequestIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Increment(context.Background(), "n", 1)
		done <- err
	}()
	<-seen // the write reached the server
	s.Stop()
	if err := <-done; !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("write cut off in flight: %v, want unknown outcome", err)
	}
	release()
}

func TestNoEndpointReachable(t *testing.T) {
	c, err := New(Config{Endpoints: []string{deadAddr(t)}, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get: %v", err)
	}
	if _, err := c.Put(context.Background(), "k", nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("put: %v", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("no endpoints accepted")
	}
}

// A node's overloaded refusal is ErrOverloaded, over Batch and unary calls
// alike (a value too large for Batch goes as its unary call).
func TestOverloadedIsTyped(t *testing.T) {
	b := clientapitest.New()
	b.SetFail(fmt.Errorf("%w: 8192 in flight", kv.ErrOverloaded))
	addr, _ := clientapitest.ServeGRPC(t, b)
	c, err := New(Config{Endpoints: []string{addr}, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := []struct {
		name string
		do   func() error
	}{
		{"get (batch)", func() error { _, err := c.Get(ctx, "k"); return err }},
		{"put (batch)", func() error { _, err := c.Put(ctx, "k", []byte("v")); return err }},
		{"put (unary)", func() error { _, err := c.Put(ctx, "k", make([]byte, batchOpBytes+1)); return err }},
	}
	for _, call := range calls {
		if err := call.do(); !errors.Is(err, ErrOverloaded) {
			t.Errorf("%s on an overloaded node: %v, want ErrOverloaded", call.name, err)
		}
	}
}

// A node cut off without a reset (packets dropped: the connection looks
// ready) costs the calls in flight when it went silent, not the later
// ones: those move on to the next endpoint, reads and writes alike.
func TestSilentEndpointIsPassedOver(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, c *Client) error
	}{
		{"read", func(ctx context.Context, c *Client) error { _, err := c.Get(ctx, "k"); return err }},
		{"write", func(ctx context.Context, c *Client) error { _, err := c.Put(ctx, "k", []byte("w")); return err }},
		{"unary write", func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, "k", make([]byte, batchOpBytes+1))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, _ := clientapitest.ServeGRPC(t, clientapitest.New())
			second, _ := clientapitest.ServeGRPC(t, clientapitest.New())
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
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "k", []byte("v")); err != nil { // through the proxy
				t.Fatal(err)
			}
			proxy.Cut(faultproxy.Hang)
			// A call in flight on the silent node waits for its deadline.
			short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
			err = tt.call(short, c)
			cancelShort()
			if err == nil {
				t.Fatal("a call through a silent node was answered")
			}
			// Later calls go to the next endpoint and are answered.
			for i := range 3 {
				call, cancelCall := context.WithTimeout(ctx, 2*time.Second)
				err := tt.call(call, c)
				cancelCall()
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("call %d after the node went silent: %v", i, err)
				}
			}
		})
	}
}

// A request an overloaded node refused (nothing applied) moves on to the
// next endpoint, writes included.
func TestOverloadedMovesOn(t *testing.T) {
	busy := clientapitest.New()
	busy.SetFail(fmt.Errorf("%w: 8192 in flight", kv.ErrOverloaded))
	busyAddr, _ := clientapitest.ServeGRPC(t, busy)
	okAddr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{busyAddr, okAddr}, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := []struct {
		name string
		do   func() error
	}{
		{"put (batch)", func() error { _, err := c.Put(ctx, "k", []byte("v")); return err }},
		{"put (unary)", func() error { _, err := c.Put(ctx, "k", make([]byte, batchOpBytes+1)); return err }},
		{"get (batch)", func() error { _, err := c.Get(ctx, "k"); return err }},
	}
	for _, call := range calls {
		if err := call.do(); err != nil {
			t.Errorf("%s with the first endpoint overloaded: %v", call.name, err)
		}
	}
}

// TestPlaintextCredentialsRefused: a client with a user refuses to send
// its password and tokens over plain TCP to an endpoint that is not
// loopback, unless told to; TLS, loopback or no user need nothing.
func TestPlaintextCredentialsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"user, plain, remote", Config{Endpoints: []string{"10.0.0.1:7070"}, Username: "alice"}, false},
		{"user, plain, one remote among loopback", Config{Endpoints: []string{"127.0.0.1:7070", "db.example:7070"}, Username: "alice"}, false},
		{"user, plain, remote, allowed", Config{Endpoints: []string{"10.0.0.1:7070"}, Username: "alice", AllowPlaintextCredentials: true}, true},
		{"user, plain, loopback", Config{Endpoints: []string{"127.0.0.1:7070", "[::1]:7070", "localhost:7070"}, Username: "alice"}, true},
		{"user, TLS, remote", Config{Endpoints: []string{"10.0.0.1:7070"}, Username: "alice", TLS: &tls.Config{}}, true},
		{"no user, plain, remote", Config{Endpoints: []string{"10.0.0.1:7070"}}, true},
	} {
		c, err := New(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
		if c != nil {
			c.Close()
		}
	}
}
