package etcdapi_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// TestLeases: etcd's Lease service on caspaxos's leases: grant with and
// without an ID (TTLs in seconds, 0 raised to 1, too large refused),
// a second grant of a live ID, keep-alive over the stream (the TTL for a
// live lease, 0 for a revoked or absent one, the stream going on), time
// to live (-1 once revoked; keys refused), revoke, the list of live
// leases, and a Put with a lease refused with a message that says why.
func TestLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := serve(t, clientapitest.New())
	lc := etcdpb.NewLeaseClient(conn)
	codeOf := func(err error) codes.Code { return status.Code(err) }

	g, err := lc.LeaseGrant(ctx, &etcdpb.LeaseGrantRequest{TTL: 30})
	if err != nil || g.GetID() <= 0 || g.GetTTL() != 30 {
		t.Fatalf("grant: %v, %v", g, err)
	}
	named, err := lc.LeaseGrant(ctx, &etcdpb.LeaseGrantRequest{TTL: 0, ID: 0x77})
	if err != nil || named.GetID() != 0x77 || named.GetTTL() != 1 {
		t.Fatalf("grant of ID 77 with TTL 0: %v, %v", named, err)
	}
	if _, err := lc.LeaseGrant(ctx, &etcdpb.LeaseGrantRequest{TTL: 5, ID: 0x77}); codeOf(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "etcdserver: lease already exists") {
		t.Fatalf("second grant of a live ID: %v", err)
	}
	if _, err := lc.LeaseGrant(ctx, &etcdpb.LeaseGrantRequest{TTL: 90000000}); codeOf(err) != codes.OutOfRange || !strings.Contains(err.Error(), "etcdserver: too large lease TTL") {
		t.Fatalf("grant of a TTL too large: %v", err)
	}

	ttl, err := lc.LeaseTimeToLive(ctx, &etcdpb.LeaseTimeToLiveRequest{ID: g.GetID()})
	if err != nil || ttl.GetGrantedTTL() != 30 || ttl.GetTTL() <= 0 || ttl.GetTTL() > 30 {
		t.Fatalf("time to live: %v, %v", ttl, err)
	}
	if _, err := lc.LeaseTimeToLive(ctx, &etcdpb.LeaseTimeToLiveRequest{ID: g.GetID(), Keys: true}); codeOf(err) != codes.Unimplemented || !strings.Contains(err.Error(), "keys attached to a lease are not listed") {
		t.Fatalf("time to live with keys: %v", err)
	}
	ls, err := lc.LeaseLeases(ctx, &etcdpb.LeaseLeasesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseIDs(ls); !slices.Equal(got, sorted(g.GetID(), 0x77)) {
		t.Fatalf("leases: %v, want %x and 77", got, g.GetID())
	}

	if _, err := lc.LeaseRevoke(ctx, &etcdpb.LeaseRevokeRequest{ID: 0x77}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.LeaseRevoke(ctx, &etcdpb.LeaseRevokeRequest{ID: 0x77}); codeOf(err) != codes.NotFound || !strings.Contains(err.Error(), "etcdserver: requested lease not found") {
		t.Fatalf("revoke of a revoked lease: %v", err)
	}
	if ttl, err := lc.LeaseTimeToLive(ctx, &etcdpb.LeaseTimeToLiveRequest{ID: 0x77}); err != nil || ttl.GetTTL() != -1 {
		t.Fatalf("time to live of a revoked lease: %v, %v", ttl, err)
	}
	if ls, err := lc.LeaseLeases(ctx, &etcdpb.LeaseLeasesRequest{}); err != nil || !slices.Equal(leaseIDs(ls), []int64{g.GetID()}) {
		t.Fatalf("leases after a revoke: %v, %v", ls, err)
	}

	st, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, ttl int64
	}{{g.GetID(), 30}, {0x77, 0}, {0x99, 0}, {g.GetID(), 30}} {
		if err := st.Send(&etcdpb.LeaseKeepAliveRequest{ID: tc.id}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil || r.GetID() != tc.id || r.GetTTL() != tc.ttl {
			t.Fatalf("keep-alive of %x: %v, %v; want TTL %d", tc.id, r, err, tc.ttl)
		}
	}

	// A put attaches its key to the lease (the backend here checks no
	// liveness; compat/ does, on real nodes); Range shows it, ignore_lease
	// keeps it, a put without one detaches the key.
	kc := etcdpb.NewKVClient(conn)
	if _, err := kc.Put(ctx, &etcdpb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: g.GetID()}); err != nil {
		t.Fatalf("put with a lease: %v", err)
	}
	for _, tc := range []struct {
		put  *etcdpb.PutRequest
		want int64
	}{
		{nil, g.GetID()},
		{&etcdpb.PutRequest{Key: []byte("k"), Value: []byte("w"), IgnoreLease: true}, g.GetID()},
		{&etcdpb.PutRequest{Key: []byte("k"), Value: []byte("x")}, 0},
	} {
		if tc.put != nil {
			if _, err := kc.Put(ctx, tc.put); err != nil {
				t.Fatal(err)
			}
		}
		r, err := kc.Range(ctx, &etcdpb.RangeRequest{Key: []byte("k")})
		if err != nil || len(r.GetKvs()) != 1 || r.GetKvs()[0].GetLease() != tc.want {
			t.Fatalf("after %v: %v, %v; want lease %d", tc.put, r, err, tc.want)
		}
	}
}

func leaseIDs(r *etcdpb.LeaseLeasesResponse) []int64 {
	var out []int64
	for _, l := range r.GetLeases() {
		out = append(out, l.GetID())
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...int64) []int64 {
	slices.Sort(ids)
	return ids
}
