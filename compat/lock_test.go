package compat

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lockChecks drives etcd's v3lock and v3election services with etcd's
// own generated gRPC clients (go.etcd.io/etcd/server/v3's v3lockpb and
// v3electionpb) over clientv3's connections to two nodes, a and b: mutual
// exclusion and rising fencing tokens (header.revision) across nodes, a
// campaign that waits until the leader resigns, an observer that sees
// each leader and proclaim, etcd's election errors; then the refusal of
// clientv3's concurrency Mutex and Election, which rank waiters by
// create_revision across keys.
func lockChecks(t *testing.T, ctx context.Context, a, b *clientv3.Client, prefix string) {
	la, lb := v3lockpb.NewLockClient(a.ActiveConnection()), v3lockpb.NewLockClient(b.ActiveConnection())
	ea, eb := v3electionpb.NewElectionClient(a.ActiveConnection()), v3electionpb.NewElectionClient(b.ActiveConnection())
	lease := func(c *clientv3.Client) clientv3.LeaseID {
		t.Helper()
		g, err := c.Grant(ctx, 30)
		if err != nil {
			t.Fatalf("Grant: %v", err)
		}
		return g.ID
	}
	l1, l2 := lease(a), lease(b)
	name := []byte(prefix + "lock")

	held, err := la.Lock(ctx, &v3lockpb.LockRequest{Name: name, Lease: int64(l1)})
	if err != nil || held.GetHeader().GetRevision() <= 0 || !strings.HasPrefix(string(held.GetKey()), string(name)+"/") {
		t.Fatalf("Lock at n1: %v %v", held, err)
	}
	// While n1's lease holds it, a Lock at n2 waits until its deadline.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = lb.Lock(short, &v3lockpb.LockRequest{Name: name, Lease: int64(l2)})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Lock at n2 of the lock n1 holds: %v, want DeadlineExceeded", err)
	}
	second := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		r, err := lb.Lock(ctx, &v3lockpb.LockRequest{Name: name, Lease: int64(l2)})
		if err != nil {
			t.Errorf("waiting Lock at n2: %v", err)
		}
		second <- r
	}()
	if _, err := la.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.GetKey()}); err != nil {
		t.Fatalf("Unlock at n1: %v", err)
	}
	r := <-second
	if r.GetHeader().GetRevision() <= held.GetHeader().GetRevision() {
		t.Fatalf("n2's token %d is not above n1's %d", r.GetHeader().GetRevision(), held.GetHeader().GetRevision())
	}
	if _, err := lb.Unlock(ctx, &v3lockpb.UnlockRequest{Key: r.GetKey()}); err != nil {
		t.Fatalf("Unlock at n2: %v", err)
	}

	ename := []byte(prefix + "election")
	if _, err := eb.Leader(ctx, &v3electionpb.LeaderRequest{Name: ename}); status.Convert(err).Message() != "election: no leader" {
		t.Fatalf("Leader of an election nobody leads: %v", err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	obs, err := eb.Observe(octx, &v3electionpb.LeaderRequest{Name: ename})
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	observed := func(want string) int64 {
		t.Helper()
		r, err := obs.Recv()
		if err != nil || string(r.GetKv().GetValue()) != want {
			t.Fatalf("observed %v %v, want %q", r, err, want)
		}
		return r.GetKv().GetModRevision()
	}
	c1, err := ea.Campaign(ctx, &v3electionpb.CampaignRequest{Name: ename, Lease: int64(l1), Value: []byte("one")})
	if err != nil {
		t.Fatalf("Campaign at n1: %v", err)
	}
	if rev := observed("one"); rev != c1.GetLeader().GetRev() {
		t.Fatalf("observed the leader at %d, its campaign answered %d", rev, c1.GetLeader().GetRev())
	}
	won := make(chan *v3electionpb.CampaignResponse, 1)
	go func() {
		r, err := eb.Campaign(ctx, &v3electionpb.CampaignRequest{Name: ename, Lease: int64(l2), Value: []byte("two")})
		if err != nil {
			t.Errorf("waiting Campaign at n2: %v", err)
		}
		won <- r
	}()
	if _, err := ea.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: c1.GetLeader(), Value: []byte("uno")}); err != nil {
		t.Fatalf("Proclaim at n1: %v", err)
	}
	observed("uno")
	if l, err := eb.Leader(ctx, &v3electionpb.LeaderRequest{Name: ename}); err != nil || string(l.GetKv().GetValue()) != "uno" || l.GetKv().GetLease() != int64(l1) {
		t.Fatalf("Leader at n2: %v %v", l, err)
	}
	if _, err := ea.Resign(ctx, &v3electionpb.ResignRequest{Leader: c1.GetLeader()}); err != nil {
		t.Fatalf("Resign at n1: %v", err)
	}
	c2 := <-won
	if rev := observed("two"); rev != c2.GetLeader().GetRev() || rev <= c1.GetLeader().GetRev() {
		t.Fatalf("the second leader observed at %d, campaign answered %d, the first's %d", rev, c2.GetLeader().GetRev(), c1.GetLeader().GetRev())
	}
	if _, err := ea.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: c1.GetLeader(), Value: []byte("late")}); status.Convert(err).Message() != "election: not leader" {
		t.Fatalf("Proclaim by the resigned leader: %v", err)
	}
	if _, err := eb.Resign(ctx, &v3electionpb.ResignRequest{Leader: c2.GetLeader()}); err != nil {
		t.Fatalf("Resign at n2: %v", err)
	}

	// clientv3's concurrency package is refused, saying what to use.
	s, err := concurrency.NewSession(a, concurrency.WithLease(l1))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s.Orphan()
	m := concurrency.NewMutex(s, prefix+"mutex")
	if err := m.Lock(ctx); codeOf(err) != codes.Unimplemented || !strings.Contains(err.Error(), "v3lock and v3election services") {
		t.Fatalf("concurrency.Mutex.Lock: %v, want Unimplemented naming the lock services", err)
	}
	e := concurrency.NewElection(s, prefix+"celection")
	if err := e.Campaign(ctx, "x"); codeOf(err) != codes.Unimplemented || !strings.Contains(err.Error(), "v3lock and v3election services") {
		t.Fatalf("concurrency.Election.Campaign: %v, want Unimplemented naming the lock services", err)
	}
	if _, err := e.Leader(ctx); errors.Is(err, concurrency.ErrElectionNoLeader) || codeOf(err) != codes.Unimplemented {
		t.Fatalf("concurrency.Election.Leader: %v, want Unimplemented", err)
	}
}

// etcdctlLockChecks: `etcdctl lock` and `etcdctl elect` use clientv3's
// concurrency package, which ranks waiters by create_revision across keys:
// refused, naming the services to use (the observer's etcdctl hides the
// reason).
func etcdctlLockChecks(t *testing.T, e etcdctl) {
	e.refused("", []string{"lock", "ctl-lock", "echo", "held"}, "v3lock and v3election services")
	e.refused("", []string{"elect", "ctl-election", "proposal"}, "v3lock and v3election services")
	// The observer's first Range is refused: etcdctl says only that its
	// observer was lost.
	e.refused("", []string{"elect", "--listen", "ctl-election"}, "observer lost")
}
