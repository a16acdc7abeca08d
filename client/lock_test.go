package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

func lockClient(t *testing.T) *Client {
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLock: a second Lock waits for the first's unlock and gets a higher
// token; a hold whose lease is revoked is broken for the next one.
func TestLock(t *testing.T) {
	c := lockClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t1, unlock, err := c.Lock(ctx, "res", LockOptions{Owner: "first"})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		token  uint64
		unlock func(context.Context) error
		err    error
	}
	second := make(chan result, 1)
	go func() {
		tok, un, err := c.Lock(ctx, "res", LockOptions{Owner: "second", Wait: 200 * time.Millisecond, LockDelay: NoLockDelay})
		second <- result{tok, un, err}
	}()
	if st, err := c.GetLock(ctx, "res", 0, 0); err != nil || st.Owner != "first" || st.Token != t1 {
		t.Fatalf("while held: %+v, %v", st, err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-second
	if r.err != nil || r.token <= t1 {
		t.Fatalf("second: token %d after %d, %v", r.token, t1, r.err)
	}
	// The second's lease ends while it holds the lock: the next acquirer
	// breaks the hold (no lock delay: the second asked for none).
	st, _ := c.GetLock(ctx, "res", 0, 0)
	if err := c.Revoke(ctx, st.Holder); err != nil {
		t.Fatal(err)
	}
	t3, unlock3, err := c.Lock(ctx, "res", LockOptions{})
	if err != nil || t3 <= r.token {
		t.Fatalf("after the holder's lease ended: token %d after %d, %v", t3, r.token, err)
	}
	if err := r.unlock(ctx); !errors.Is(err, ErrNotLockHolder) {
		t.Fatalf("unlock of a broken hold: %v", err)
	}
	if err := unlock3(ctx); err != nil {
		t.Fatal(err)
	}
	// Refusals arrive typed over gRPC.
	for _, tc := range []struct {
		name  string
		lease uint64
		want  error
	}{
		{"", 1, ErrBadRequest},
		{"\x00x", 1, ErrBadRequest},
		{"res", 0, ErrBadRequest},
		{"res", 0x99, ErrLeaseNotFound},
	} {
		if _, err := c.AcquireLock(ctx, tc.name, tc.lease, nil, LockOptions{Wait: 10 * time.Millisecond}); !errors.Is(err, tc.want) {
			t.Fatalf("acquire %q by %x: %v, want %v", tc.name, tc.lease, err, tc.want)
		}
	}
	s, err := c.NewSession(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := s.Lock(ctx, "held", LockOptions{}); err != nil {
		t.Fatal(err)
	}
	short, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	if _, _, err := c.Lock(short, "held", LockOptions{Wait: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock of a held lock until ctx ends: %v", err)
	}
}

// TestElection: campaign, proclaim, observe, resign.
func TestElection(t *testing.T) {
	c := lockClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	e := s.Election("e")
	if _, err := e.Campaign(ctx, []byte("a:1"), LockOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 8)
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	go func() {
		for st, err := range c.Observe(octx, "e") {
			if err == nil {
				seen <- string(st.Value)
			}
		}
	}()
	if v := <-seen; v != "a:1" {
		t.Fatalf("observe first saw %q", v)
	}
	if _, err := e.Proclaim(ctx, []byte("a:2")); err != nil {
		t.Fatal(err)
	}
	if v := <-seen; v != "a:2" {
		t.Fatalf("observe then saw %q", v)
	}
	if l, err := e.Leader(ctx); err != nil || l.Holder != s.Lease.ID || string(l.Value) != "a:2" {
		t.Fatalf("leader: %+v, %v", l, err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Proclaim(ctx, []byte("a:3")); !errors.Is(err, ErrNotLockHolder) {
		t.Fatalf("proclaim after resigning: %v", err)
	}
}
