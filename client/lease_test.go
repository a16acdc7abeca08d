package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestLeaseKeepAlive: a granted lease kept alive in the background is
// live past several TTLs; revoked, the helper ends with ErrLeaseNotFound;
// the calls' refusals arrive typed.
func TestLeaseKeepAlive(t *testing.T) {
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl = 600 * time.Millisecond
	l, err := c.Grant(ctx, ttl)
	if err != nil || l.ID == 0 || l.TTL != ttl || l.State != "live" {
		t.Fatalf("grant: %+v, %v", l, err)
	}
	k := c.KeepAlive(ctx, l)
	start := time.Now()
	for time.Since(start) < 2*ttl {
		if got, err := c.TimeToLive(ctx, l.ID); err != nil || got.State != "live" {
			t.Fatalf("kept alive, after %v: %+v, %v", time.Since(start), got, err)
		}
		select {
		case <-k.Done():
			t.Fatalf("the helper stopped: %v", k.Err())
		case <-time.After(ttl / 4):
		}
	}
	if !k.ValidUntil().After(start.Add(ttl)) {
		t.Fatalf("ValidUntil %v did not move past the first TTL", k.ValidUntil())
	}
	if err := c.Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	<-k.Done()
	if !errors.Is(k.Err(), ErrLeaseNotFound) {
		t.Fatalf("after revoke: %v, want ErrLeaseNotFound", k.Err())
	}
	if _, err := c.TimeToLive(ctx, l.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("time to live of a revoked lease: %v", err)
	}
	if _, err := c.Grant(ctx, time.Millisecond); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("grant of 1ms: %v", err)
	}
}
