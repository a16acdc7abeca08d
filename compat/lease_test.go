package compat

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// leaseChecks runs clientv3's lease calls on caspaxos's leases: a, b are
// clients of two nodes. A lease of etcd's shortest TTL (1 s) kept alive
// over clientv3's KeepAlive stream outlives another of the same TTL left
// alone, which the cluster expires; then TimeToLive, Leases, Revoke, and
// the refusal of TimeToLive with keys.
func leaseChecks(t *testing.T, ctx context.Context, a, b *clientv3.Client) {
	kept, err := a.Grant(ctx, 1)
	if err != nil || kept.ID == 0 || kept.TTL != 1 {
		t.Fatalf("Grant: %+v %v", kept, err)
	}
	alone, err := b.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := a.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	acks := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		ttl, err := b.TimeToLive(ctx, alone.ID)
		if err != nil {
			t.Fatalf("TimeToLive: %v", err)
		}
		if ttl.TTL == -1 {
			break // expired by the cluster
		}
		if time.Now().After(deadline) {
			t.Fatalf("a lease of 1 s left alone is still live after 10 s: %+v", ttl)
		}
		select {
		case r := <-ch:
			if r == nil || r.ID != kept.ID || r.TTL != 1 {
				t.Fatalf("KeepAlive answer: %+v", r)
			}
			acks++
		case <-time.After(100 * time.Millisecond):
		}
	}
	ttl, err := b.TimeToLive(ctx, kept.ID)
	if err != nil || ttl.TTL < 0 || ttl.GrantedTTL != 1 || acks < 2 {
		t.Fatalf("the lease kept alive, after %d acknowledgements, once the other expired: %+v %v", acks, ttl, err)
	}
	once, err := b.KeepAliveOnce(ctx, kept.ID)
	if err != nil || once.TTL != 1 {
		t.Fatalf("KeepAliveOnce: %+v %v", once, err)
	}
	if _, err := b.TimeToLive(ctx, kept.ID, clientv3.WithAttachedKeys()); codeOf(err) != codes.Unimplemented || !strings.Contains(err.Error(), "keys attached to a lease are not listed") {
		t.Fatalf("TimeToLive with keys: %v", err)
	}
	ls, err := a.Leases(ctx)
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	var ids []clientv3.LeaseID
	for _, l := range ls.Leases {
		ids = append(ids, l.ID)
	}
	if !slices.Contains(ids, kept.ID) || slices.Contains(ids, alone.ID) {
		t.Fatalf("Leases: %x, want %x and not the expired %x", ids, kept.ID, alone.ID)
	}
	// Keys attached by a Put with the lease; one put again without it.
	for _, k := range []string{"leased/1", "leased/2"} {
		if _, err := a.Put(ctx, k, "v", clientv3.WithLease(kept.ID)); err != nil {
			t.Fatalf("Put with a lease: %v", err)
		}
	}
	if r, err := b.Get(ctx, "leased/1"); err != nil || len(r.Kvs) != 1 || clientv3.LeaseID(r.Kvs[0].Lease) != kept.ID {
		t.Fatalf("Get of a key put with lease %x: %+v %v", kept.ID, r, err)
	}
	if _, err := b.Put(ctx, "leased/2", "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Revoke(ctx, kept.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// Revoked, the keep-alive channel closes.
	for r := range ch {
		if r.ID != kept.ID {
			t.Fatalf("KeepAlive answer: %+v", r)
		}
	}
	if ttl, err := a.TimeToLive(ctx, kept.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("TimeToLive of a revoked lease: %+v %v", ttl, err)
	}
	if _, err := a.KeepAliveOnce(ctx, kept.ID); err == nil || !strings.Contains(err.Error(), "requested lease not found") {
		t.Fatalf("KeepAliveOnce of a revoked lease: %v", err)
	}
	if _, err := a.Revoke(ctx, kept.ID); codeOf(err) != codes.NotFound || !strings.Contains(err.Error(), "requested lease not found") {
		t.Fatalf("Revoke of a revoked lease: %v", err)
	}
	// The revoked lease's key goes (every node's reaper sweeps); the one
	// put again without it stays; a put with the revoked lease is refused.
	deadline = time.Now().Add(10 * time.Second)
	for {
		r, err := a.Get(ctx, "leased/1")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key attached to a revoked lease is still there after 10 s: %+v", r.Kvs[0])
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's reapers
	}
	if r, err := a.Get(ctx, "leased/2"); err != nil || len(r.Kvs) != 1 || r.Kvs[0].Lease != 0 {
		t.Fatalf("a key put again without the lease: %+v %v", r, err)
	}
	if _, err := a.Put(ctx, "leased/3", "v", clientv3.WithLease(kept.ID)); codeOf(err) != codes.NotFound || !strings.Contains(err.Error(), "requested lease not found") {
		t.Fatalf("Put with a revoked lease: %v", err)
	}
}

// etcdctlLeaseChecks: etcdctl's lease commands.
func etcdctlLeaseChecks(t *testing.T, e etcdctl) {
	out, err := e.run("", "lease", "grant", "30")
	m := regexp.MustCompile(`lease ([0-9a-f]{16}) granted with TTL\(30s\)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("etcdctl lease grant 30: %v\n%s", err, out)
	}
	id := m[1]
	e.must("", []string{"lease", "keep-alive", "--once", id}, fmt.Sprintf("lease %s keepalived with TTL(30)", id))
	// Without --once: over the keep-alive stream (its first renewal; the
	// next would come a third of the TTL later).
	e.until(fmt.Sprintf("lease %s keepalived with TTL(30)", id), nil, "lease", "keep-alive", id)
	e.must("", []string{"lease", "timetolive", id}, fmt.Sprintf("lease %s granted with TTL(30s), remaining(", id))
	e.must("", []string{"lease", "list"}, id)
	e.refused("", []string{"lease", "timetolive", "--keys", id}, "keys attached to a lease are not listed")
	e.must("", []string{"put", "leased", "v", "--lease", id}, "OK")
	e.must("", []string{"get", "leased"}, "v")
	e.must("", []string{"lease", "revoke", id}, fmt.Sprintf("lease %s revoked", id))
	e.must("", []string{"lease", "timetolive", id}, fmt.Sprintf("lease %s already expired", id))
	e.refused("", []string{"lease", "keep-alive", "--once", id}, "requested lease not found")
	e.refused("", []string{"put", "k", "v", "--lease", id}, "requested lease not found")
	// The revoked lease's key goes (every node's reaper sweeps).
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := e.run("", "get", "leased")
		if err == nil && !strings.Contains(out, "leased") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdctl get of a key attached to a revoked lease after 10 s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling a process we do not control
	}
}
