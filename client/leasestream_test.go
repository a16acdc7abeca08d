package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestKeepAliveStream: two leases kept alive by background helpers stay
// live past several TTLs while an expirer proposes their expiry all the
// time, and a lease left alone meanwhile expires (so the expirer works);
// every renewal went over one keep-alive stream, none as a unary call;
// revoked, a helper ends with ErrLeaseNotFound, which the stream
// answered.
func TestKeepAliveStream(t *testing.T) {
	b := clientapitest.New()
	var streams, unary atomic.Int64
	s := grpc.NewServer(
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if strings.HasSuffix(info.FullMethod, "/LeaseKeepAlives") {
				streams.Add(1)
			}
			return h(srv, ss)
		}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasSuffix(info.FullMethod, "/LeaseKeepAlive") {
				unary.Add(1)
			}
			return h(ctx, req)
		}))
	clientapi.RegisterGRPC(s, clientapi.GRPCConfig{Limits: kv.DefaultLimits}, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	c, err := New(Config{Endpoints: []string{lis.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The fake backend runs expiry's change at its own time with the
	// default skew bound: a lease left alone expires once ttl + skew has
	// passed since its last renewal.
	const ttl = 300 * time.Millisecond
	var ids []uint64
	for range 3 {
		l, err := c.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l.ID)
	}
	expirer, stop := context.WithCancel(ctx)
	defer stop()
	go expireAll(expirer, b, ttl/6, ids...)
	k1 := c.KeepAlive(ctx, Lease{ID: ids[0], TTL: ttl})
	k2 := c.KeepAlive(ctx, Lease{ID: ids[1], TTL: ttl})
	// Wait until the lease left alone has expired: at least ttl + skew.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.TimeToLive(ctx, ids[2]); errors.Is(err, ErrLeaseNotFound) {
			break
		} else if err != nil || time.Now().After(deadline) {
			t.Fatalf("the lease left alone did not expire: %v", err)
		}
		<-time.After(ttl / 6)
	}
	start := time.Now()
	for time.Since(start) < 4*ttl {
		for i, k := range []*KeepAlive{k1, k2} {
			if got, err := c.TimeToLive(ctx, ids[i]); err != nil || got.State != "live" {
				t.Fatalf("lease %d kept alive over the stream: %+v, %v", i, got, err)
			}
			select {
			case <-k.Done():
				t.Fatalf("helper %d stopped: %v", i, k.Err())
			default:
			}
		}
		<-time.After(ttl / 6)
	}
	if n, u := streams.Load(), unary.Load(); n != 1 || u != 0 {
		t.Fatalf("%d keep-alive streams and %d unary keep-alives, want 1 and 0", n, u)
	}
	if err := c.Revoke(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	<-k1.Done()
	if !errors.Is(k1.Err(), ErrLeaseNotFound) {
		t.Fatalf("after revoke: %v, want ErrLeaseNotFound", k1.Err())
	}
	select {
	case <-k2.Done():
		t.Fatalf("the other lease's helper stopped too: %v", k2.Err())
	default:
	}
}

// expireAll proposes the expiry of leases ids on b every interval until
// ctx ends, as a reaper would.
func expireAll(ctx context.Context, b *clientapitest.Backend, every time.Duration, ids ...uint64) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, id := range ids {
			_, _ = b.Do(ctx, kv.Op{Kind: kv.OpLeaseExpire, Key: kv.LeaseKey(id)})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// TestKeepAliveStreamReconnects: the node whose stream a helper uses
// stops; the helper renews over a stream to the other node, and the lease
// stays live past several TTLs under an expirer.
func TestKeepAliveStreamReconnects(t *testing.T) {
	b := clientapitest.New()
	a1, s1 := clientapitest.ServeGRPC(t, b)
	a2, _ := clientapitest.ServeGRPC(t, b)
	c, err := New(Config{Endpoints: []string{a1, a2}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl = 300 * time.Millisecond
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	expirer, stop := context.WithCancel(ctx)
	defer stop()
	go expireAll(expirer, b, ttl/6, l.ID)
	k := c.KeepAlive(ctx, l)
	// Wait for a renewal over the first node's stream, then stop it.
	first := k.ValidUntil()
	for !k.ValidUntil().After(first) {
		select {
		case <-k.Done():
			t.Fatalf("helper stopped: %v", k.Err())
		case <-time.After(ttl / 10):
		}
	}
	s1.Stop()
	stopped := time.Now()
	for time.Since(stopped) < 4*ttl {
		if got, err := c.TimeToLive(ctx, l.ID); err != nil || got.State != "live" {
			t.Fatalf("%v after the first node stopped: %+v, %v", time.Since(stopped), got, err)
		}
		<-time.After(ttl / 6)
	}
	if !k.ValidUntil().After(stopped.Add(ttl)) {
		t.Fatalf("ValidUntil %v: no renewal acknowledged since the first node stopped at %v", k.ValidUntil(), stopped)
	}
}

// TestKeepAliveWithoutStream: against a node that does not serve the
// keep-alive stream (an older one), the helper renews with the unary call
// and keeps the lease live past several TTLs under an expirer.
func TestKeepAliveWithoutStream(t *testing.T) {
	b := clientapitest.New()
	var unary atomic.Int64
	s := grpc.NewServer(
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if strings.HasSuffix(info.FullMethod, "/LeaseKeepAlives") {
				return status.Error(codes.Unimplemented, "unknown method LeaseKeepAlives")
			}
			return h(srv, ss)
		}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasSuffix(info.FullMethod, "/LeaseKeepAlive") {
				unary.Add(1)
			}
			return h(ctx, req)
		}))
	clientapi.RegisterGRPC(s, clientapi.GRPCConfig{Limits: kv.DefaultLimits}, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	c, err := New(Config{Endpoints: []string{lis.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl = 300 * time.Millisecond
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	expirer, stop := context.WithCancel(ctx)
	defer stop()
	go expireAll(expirer, b, ttl/6, l.ID)
	k := c.KeepAlive(ctx, l)
	start := time.Now()
	for time.Since(start) < 4*ttl {
		if got, err := c.TimeToLive(ctx, l.ID); err != nil || got.State != "live" {
			t.Fatalf("%v: %+v, %v", time.Since(start), got, err)
		}
		<-time.After(ttl / 6)
	}
	if unary.Load() < 2 {
		t.Fatalf("%d unary keep-alives, want the helper to fall back to them", unary.Load())
	}
	select {
	case <-k.Done():
		t.Fatalf("helper stopped: %v", k.Err())
	default:
	}
}

// TestKeepAliveStreamOneRenewalPerLease: renewals of one lease on a stream
// go one at a time (so that an answer is always its own request's): with
// the node holding writes, a renewal whose caller gave up and two live
// ones of the same lease all end once the node answers, the live ones
// successfully, none left waiting for an answer another took.
func TestKeepAliveStreamOneRenewalPerLease(t *testing.T) {
	b := clientapitest.New()
	addr, _ := clientapitest.ServeGRPC(t, b)
	c, err := New(Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		seen, release := b.HoldWrites()
		short, stop := context.WithCancel(ctx)
		gaveUp := make(chan error, 1)
		go func() { _, err := c.renewStreamed(short, l.ID); gaveUp <- err }()
		<-seen // the first renewal is held at the node
		stop()
		if err := <-gaveUp; err == nil {
			t.Fatalf("round %d: a renewal whose caller gave up succeeded", round)
		}
		live := make(chan error, 2)
		for range 2 {
			go func() { _, err := c.renewStreamed(ctx, l.ID); live <- err }()
		}
		release()
		for range 2 {
			if err := <-live; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
