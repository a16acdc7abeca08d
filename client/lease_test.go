package client

import (
	"context"
	"errors"
	"fmt"
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

// TestWriteWithLease: WithLease attaches the key on Put, Create and
// CompareAndSwap, over Batch and over the unary calls (a value too large
// for Batch); Get reports the lease; a Put without it detaches the key.
func TestWriteWithLease(t *testing.T) {
	addr, _ := clientapitest.ServeGRPC(t, clientapitest.New())
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := make([]byte, batchOpBytes+1)
	lease := func(key string) uint64 {
		t.Helper()
		v, err := c.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return v.Lease
	}
	for _, value := range [][]byte{[]byte("v"), big} {
		key := fmt.Sprint("k", len(value))
		if _, err := c.Create(ctx, key, value, WithLease(5)); err != nil {
			t.Fatal(err)
		}
		if got := lease(key); got != 5 {
			t.Fatalf("%s created with lease 5: %d", key, got)
		}
		if _, err := c.CompareAndSwap(ctx, key, 1, value, WithLease(6)); err != nil {
			t.Fatal(err)
		}
		if got := lease(key); got != 6 {
			t.Fatalf("%s swapped with lease 6: %d", key, got)
		}
		if _, err := c.Put(ctx, key, value, WithLease(7)); err != nil {
			t.Fatal(err)
		}
		if got := lease(key); got != 7 {
			t.Fatalf("%s put with lease 7: %d", key, got)
		}
		if _, err := c.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
		if got := lease(key); got != 0 {
			t.Fatalf("%s put without a lease: %d", key, got)
		}
	}
}
