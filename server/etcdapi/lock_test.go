package etcdapi_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/etcdapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3electionpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3lockpb"
)

// signalWatches are the backend's watches, telling the test each time a
// watch starts (a waiter has gone to wait).
type signalWatches struct {
	b       *clientapitest.Backend
	started chan struct{}
}

func (w signalWatches) Watch(ctx context.Context, req kv.WatchRequest) (clientapi.Watcher, error) {
	wa, err := w.b.Watch(ctx, req)
	select {
	case w.started <- struct{}{}:
	default:
	}
	return wa, err
}

// serveLocks serves the etcd API with watches and a 1 ms lock delay over
// b; started gets a value each time a watch starts.
func serveLocks(t *testing.T, b *clientapitest.Backend) (conn *grpc.ClientConn, started <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(etcdapi.ServerOptions()...)
	etcdapi.New(etcdapi.Config{MemberID: 1, Version: etcdapi.APIVersion, Watches: signalWatches{b: b, started: ch}, LockDelay: time.Millisecond}, b).Register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, ch
}

func grantLease(t *testing.T, b *clientapitest.Backend, id uint64) {
	t.Helper()
	if _, err := b.Do(context.Background(), kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: 60_000}); err != nil {
		t.Fatal(err)
	}
}

// contender takes a lock or leads an election through etcd's services.
type contender struct {
	lock     bool
	locks    v3lockpb.LockClient
	election v3electionpb.ElectionClient
}

// take acquires name for lease (campaigning with value): the hold's key
// and token.
func (c contender) take(ctx context.Context, name string, lease int64, value string) (string, int64, error) {
	if c.lock {
		r, err := c.locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(name), Lease: lease})
		return string(r.GetKey()), r.GetHeader().GetRevision(), err
	}
	r, err := c.election.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte(name), Lease: lease, Value: []byte(value)})
	if err == nil && r.GetHeader().GetRevision() != r.GetLeader().GetRev() {
		panic("campaign's header revision is not the leader's rev")
	}
	return string(r.GetLeader().GetKey()), r.GetLeader().GetRev(), err
}

// give releases the hold key of name by lease.
func (c contender) give(ctx context.Context, name, key string, lease int64) error {
	if c.lock {
		_, err := c.locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: []byte(key)})
		return err
	}
	_, err := c.election.Resign(ctx, &v3electionpb.ResignRequest{Leader: &v3electionpb.LeaderKey{Name: []byte(name), Key: []byte(key), Lease: lease}})
	return err
}

// TestLockContenders: two contenders for one lock (v3lock) or election
// (v3election): the second waits, on a watch, while the first holds it,
// and gets it with a higher token once the first releases it or its
// lease ends (a break, then the lock delay); the first's late release is
// answered OK, as etcd answers it, and takes nothing from the second.
func TestLockContenders(t *testing.T) {
	const first, second = 0x1a, 0x2b
	for _, service := range []string{"lock", "election"} {
		for _, end := range []string{"release", "lease revoked"} {
			t.Run(service+"/"+end, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				b := clientapitest.New()
				conn, started := serveLocks(t, b)
				c := contender{lock: service == "lock", locks: v3lockpb.NewLockClient(conn), election: v3electionpb.NewElectionClient(conn)}
				grantLease(t, b, first)
				grantLease(t, b, second)
				key1, token1, err := c.take(ctx, "jobs/a", first, "one")
				if err != nil || key1 != "jobs/a/1a" || token1 <= 0 {
					t.Fatalf("first take: key %q token %d: %v", key1, token1, err)
				}
				for len(started) > 0 { // the first took it without waiting
					<-started
				}
				type taken struct {
					key   string
					token int64
					err   error
				}
				got := make(chan taken, 1)
				go func() {
					k, tok, err := c.take(ctx, "jobs/a", second, "two")
					got <- taken{k, tok, err}
				}()
				select {
				case <-started:
				case r := <-got:
					t.Fatalf("the second took the held lock: %+v", r)
				case <-ctx.Done():
					t.Fatal("the second never waited")
				}
				select {
				case r := <-got:
					t.Fatalf("the second took the held lock: %+v", r)
				default:
				}
				if end == "release" {
					if err := c.give(ctx, "jobs/a", key1, first); err != nil {
						t.Fatal(err)
					}
				} else if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(first)}); err != nil {
					t.Fatal(err)
				}
				r := <-got
				if r.err != nil || r.key != "jobs/a/2b" || r.token <= token1 {
					t.Fatalf("second take: %+v, want key jobs/a/2b and a token above %d", r, token1)
				}
				if err := c.give(ctx, "jobs/a", key1, first); err != nil {
					t.Fatalf("the first's late release: %v", err)
				}
				st, _ := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey("jobs/a")})
				if l, err := kv.LockOf(st); err != nil || l.Holder != second || int64(st.Version) != r.token {
					t.Fatalf("the lock after the first's late release: %+v v%d, %v", l, st.Version, err)
				}
				if c.lock {
					return
				}
				_, err = c.election.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: &v3electionpb.LeaderKey{Name: []byte("jobs/a"), Key: []byte(key1), Lease: first}, Value: []byte("late")})
				if status.Code(err) != codes.Unknown || status.Convert(err).Message() != "election: not leader" {
					t.Fatalf("the first's proclaim after losing: %v", err)
				}
			})
		}
	}
}

// TestElectionObserve: an observer that opened before anyone led sees
// each leader and each proclaim; Leader answers the leader, then etcd's
// "election: no leader" once it resigned.
func TestElectionObserve(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	conn, started := serveLocks(t, b)
	ec := v3electionpb.NewElectionClient(conn)
	grantLease(t, b, 1)
	grantLease(t, b, 2)
	if _, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")}); status.Convert(err).Message() != "election: no leader" {
		t.Fatalf("leader of an election nobody leads: %v", err)
	}
	obs, err := ec.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	<-started // the observer waits on its watch
	next := func(wantValue string, wantLease int64) int64 {
		t.Helper()
		r, err := obs.Recv()
		if err != nil || string(r.GetKv().GetValue()) != wantValue || r.GetKv().GetLease() != wantLease || r.GetKv().GetModRevision() != r.GetHeader().GetRevision() {
			t.Fatalf("observed %v, %v; want %q of lease %x", r, err, wantValue, wantLease)
		}
		return r.GetKv().GetModRevision()
	}
	c1, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 1, Value: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	if rev := next("one", 1); rev != c1.GetLeader().GetRev() {
		t.Fatalf("observed the leader at %d, its campaign answered %d", rev, c1.GetLeader().GetRev())
	}
	p, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: c1.GetLeader(), Value: []byte("uno")})
	if err != nil {
		t.Fatal(err)
	}
	if rev := next("uno", 1); rev != p.GetHeader().GetRevision() {
		t.Fatalf("observed the proclaim at %d, answered at %d", rev, p.GetHeader().GetRevision())
	}
	l, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	if err != nil || string(l.GetKv().GetValue()) != "uno" || string(l.GetKv().GetKey()) != "e/1" {
		t.Fatalf("leader: %v, %v", l, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var c2 *v3electionpb.CampaignResponse
	var err2 error
	go func() {
		defer wg.Done()
		c2, err2 = ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 2, Value: []byte("two")})
	}()
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: c1.GetLeader()}); err != nil {
		t.Fatal(err)
	}
	if rev := next("two", 2); rev <= c1.GetLeader().GetRev() {
		t.Fatalf("the second leader's token %d is not above the first's %d", rev, c1.GetLeader().GetRev())
	}
	wg.Wait()
	if err2 != nil || c2.GetLeader().GetLease() != 2 {
		t.Fatalf("second campaign: %v, %v", c2, err2)
	}
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: c2.GetLeader()}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")}); status.Code(err) != codes.Unknown || status.Convert(err).Message() != "election: no leader" {
		t.Fatalf("leader after the resignation: %v", err)
	}
}

// TestLockRefusals: each malformed or impossible lock call gets its
// status, and a Lock whose caller gives up leaves no hold behind.
func TestLockRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	conn, _ := serveLocks(t, b)
	lc, ec := v3lockpb.NewLockClient(conn), v3electionpb.NewElectionClient(conn)
	grantLease(t, b, 1)
	grantLease(t, b, 2)
	if _, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("held"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"lock without a lease", func() error {
			_, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l")})
			return err
		}, codes.InvalidArgument, "needs a lease"},
		{"lock with a lease never granted", func() error {
			_, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l"), Lease: 9})
			return err
		}, codes.NotFound, "etcdserver: requested lease not found"},
		{"lock held, with a lease never granted: refused at once", func() error {
			_, err := lc.Lock(short, &v3lockpb.LockRequest{Name: []byte("held"), Lease: 9})
			return err
		}, codes.NotFound, "etcdserver: requested lease not found"},
		{"lock with an empty name", func() error {
			_, err := lc.Lock(ctx, &v3lockpb.LockRequest{Lease: 1})
			return err
		}, codes.InvalidArgument, "empty name"},
		{"lock held past the caller's deadline", func() error {
			_, err := lc.Lock(short, &v3lockpb.LockRequest{Name: []byte("held"), Lease: 2})
			return err
		}, codes.DeadlineExceeded, ""},
		{"unlock of a key with no lease", func() error {
			_, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: []byte("held")})
			return err
		}, codes.InvalidArgument, "not NAME/LEASE"},
		{"unlock of a key with a lease in leading zeros", func() error {
			_, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: []byte("held/01")})
			return err
		}, codes.InvalidArgument, "lease ID in hex"},
		{"proclaim without a leader", func() error {
			_, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("v")})
			return err
		}, codes.InvalidArgument, `"leader" field must be provided`},
		{"proclaim with another lease's key", func() error {
			_, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: &v3electionpb.LeaderKey{Name: []byte("held"), Key: []byte("held/2"), Lease: 1}})
			return err
		}, codes.InvalidArgument, "is not"},
		{"resign without a leader", func() error {
			_, err := ec.Resign(ctx, &v3electionpb.ResignRequest{})
			return err
		}, codes.InvalidArgument, `"leader" field must be provided`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.code, tc.msg)
			}
		})
	}
	st, _ := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey("held")})
	if l, _ := kv.LockOf(st); l.Holder != 1 {
		t.Fatalf("the lock after the refusals: %+v", l)
	}
}

// lostOutcome is a backend whose lock acquires apply but answer an
// unknown outcome, as a proposal whose answer was lost does.
type lostOutcome struct{ *clientapitest.Backend }

func (b lostOutcome) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	st, err := b.Backend.Do(ctx, op)
	if op.Kind == kv.OpLockAcquire && err == nil {
		return protocol.State{}, kv.ErrUnknownOutcome
	}
	return st, err
}

// TestLockUnknownOutcome: a Lock whose acquire has an unknown outcome
// answers so, and releases what it may have taken: no hold is left that
// nobody knows of (which would block every other contender until the
// lease ended).
func TestLockUnknownOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	grantLease(t, b, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(etcdapi.ServerOptions()...)
	etcdapi.New(etcdapi.Config{Watches: b}, lostOutcome{b}).Register(s)
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := v3lockpb.NewLockClient(conn).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l"), Lease: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("lock with an unknown outcome: %v", err)
	}
	st, _ := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey("l")})
	if l, err := kv.LockOf(st); err != nil || st.Version == 0 || l.Holder != 0 {
		t.Fatalf("the lock after an abandoned acquire: %+v at version %d, %v", l, st.Version, err)
	}
}

// TestLeaderLeaseEnded: a leader whose lease ended, its hold not yet
// broken by a campaigner, is no leader (etcd deletes the leader's key
// with its lease).
func TestLeaderLeaseEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	conn, _ := serveLocks(t, b)
	ec := v3electionpb.NewElectionClient(conn)
	grantLease(t, b, 3)
	if _, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 3, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")}); status.Convert(err).Message() != "election: no leader" {
		t.Fatalf("leader once its lease ended: %v", err)
	}
}

// TestCreateRankingRefused: the requests by which clientv3's concurrency
// Mutex and Election rank waiters (the first or last key created under a
// prefix, alone or in the Mutex's Txn) are refused, saying to use the lock
// and election services; a Range sorted by create_revision without that
// limit is still answered.
func TestCreateRankingRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	c := etcdpb.NewKVClient(serve(t, b))
	put(t, c, "m/1", "")
	first := &etcdpb.RangeRequest{Key: []byte("m/"), RangeEnd: prefixEnd("m/"), SortTarget: etcdpb.RangeRequest_CREATE, SortOrder: etcdpb.RangeRequest_ASCEND, Limit: 1}
	last := &etcdpb.RangeRequest{Key: []byte("m/"), RangeEnd: prefixEnd("m/"), SortTarget: etcdpb.RangeRequest_CREATE, SortOrder: etcdpb.RangeRequest_DESCEND, Limit: 1, MaxCreateRevision: 5}
	mutexTxn := &etcdpb.TxnRequest{
		Compare: []*etcdpb.Compare{{Key: []byte("m/2"), Target: etcdpb.Compare_CREATE, Result: etcdpb.Compare_EQUAL, TargetUnion: &etcdpb.Compare_CreateRevision{CreateRevision: 0}}},
		Success: []*etcdpb.RequestOp{
			{Request: &etcdpb.RequestOp_RequestPut{RequestPut: &etcdpb.PutRequest{Key: []byte("m/2")}}},
			{Request: &etcdpb.RequestOp_RequestRange{RequestRange: first}},
		},
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"first created (Election.Leader, Observe)", func() error { _, err := c.Range(ctx, first); return err }},
		{"last created before mine (waitDeletes)", func() error { _, err := c.Range(ctx, last); return err }},
		{"Mutex's acquire Txn", func() error { _, err := c.Txn(ctx, mutexTxn); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "v3lock and v3election services") {
				t.Fatalf("got %v, want Unimplemented naming the lock services", err)
			}
		})
	}
	all := &etcdpb.RangeRequest{Key: []byte("m/"), RangeEnd: prefixEnd("m/"), SortTarget: etcdpb.RangeRequest_CREATE, SortOrder: etcdpb.RangeRequest_ASCEND}
	if r, err := c.Range(ctx, all); err != nil || len(r.GetKvs()) != 1 {
		t.Fatalf("a Range sorted by create_revision: %v, %v", r, err)
	}
}
