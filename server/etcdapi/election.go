package etcdapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3electionpb"
)

// electionService is etcd's v3electionpb.Election service on the native
// elections (lock.go has the mapping).
type electionService struct {
	v3electionpb.UnimplementedElectionServer
	s *Server
}

// leaderOf checks a LeaderKey: its name and lease, and its key, when
// given, must be the hold's key of that name and lease. The rev is not
// compared: a lease leads only while it holds the register, whatever
// the token it got.
func leaderOf(k *v3electionpb.LeaderKey) (name string, lease uint64, err error) {
	if k == nil {
		return "", 0, status.Error(codes.InvalidArgument, msgMissingLeaderKey)
	}
	name, lease = string(k.GetName()), uint64(k.GetLease())
	if key := string(k.GetKey()); key != "" && key != holdKey(name, lease) {
		return "", 0, fmt.Errorf("%w: leader key %q is not %q, the key of lease %x in election %q", errBadRequest, key, holdKey(name, lease), lease, name)
	}
	return name, lease, nil
}

// Campaign serves Election/Campaign: it waits until r's lease leads (or the
// caller's context ends), with r's value as the leader's.
func (e electionService) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	name := string(r.GetName())
	st, err := e.s.acquire(ctx, name, r.GetLease(), r.GetValue())
	if err != nil {
		return nil, statusOf(err)
	}
	token := kv.CurrentVersion(st)
	return &v3electionpb.CampaignResponse{Header: e.s.header(token), Leader: &v3electionpb.LeaderKey{
		Name: r.GetName(), Key: []byte(holdKey(name, uint64(r.GetLease()))), Rev: int64(token), Lease: r.GetLease()}}, nil
}

// Proclaim serves Election/Proclaim: etcd's "election: not leader" unless
// the leader key's lease leads.
func (e electionService) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	name, lease, err := leaderOf(r.GetLeader())
	if err == nil {
		err = e.s.checkLock(name, int64(lease), r.GetValue())
	}
	if err != nil {
		return nil, statusOf(err)
	}
	c, done, err := e.s.admittedLockCall(ctx, name, auth.PermWrite)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	// The leader key's rev is its hold's token: a late proclaim of an
	// earlier hold does not set a later one's value.
	st, err := e.s.b.Do(c.ctx, kv.LockProclaimOp(name, lease, uint64(max(0, r.GetLeader().GetRev())), r.GetValue()))
	switch {
	case errors.Is(err, kv.ErrNotLockHolder):
		return nil, errNotLeader
	case err != nil:
		return nil, statusOf(err)
	}
	return &v3electionpb.ProclaimResponse{Header: e.s.header(kv.CurrentVersion(st))}, nil
}

// Resign serves Election/Resign: a leadership already over is answered
// OK, as etcd answers it.
func (e electionService) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	name, lease, err := leaderOf(r.GetLeader())
	if err != nil {
		return nil, statusOf(err)
	}
	st, err := e.s.release(ctx, name, lease, uint64(max(0, r.GetLeader().GetRev())))
	if err != nil {
		return nil, statusOf(err)
	}
	return &v3electionpb.ResignResponse{Header: e.s.header(kv.CurrentVersion(st))}, nil
}

// Leader serves Election/Leader: etcd's "election: no leader" when
// nobody leads.
func (e electionService) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	name := string(r.GetName())
	if err := kv.CheckLockName(name); err != nil {
		return nil, statusOf(err)
	}
	c, done, err := e.s.admittedLockCall(ctx, name, auth.PermRead)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	st, l, led, err := e.s.leader(c.ctx, name)
	switch {
	case err != nil:
		return nil, statusOf(err)
	case !led:
		return nil, errNoLeader
	}
	return e.s.leaderResponse(name, st, l), nil
}

// leader reads election name's register linearizably, and, when it is
// held, its holder's lease: led is false when nobody holds it or the
// holder's lease is not live (its hold is over; the next campaigner
// breaks it).
func (s *Server) leader(ctx context.Context, name string) (st protocol.State, l kv.Lock, led bool, err error) {
	if st, err = s.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey(name)}); err != nil {
		return st, l, false, err
	}
	if l, err = kv.LockOf(st); err != nil || l.Holder == 0 {
		return st, l, false, err
	}
	ls, err := s.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(l.Holder)})
	if err != nil {
		return st, l, false, err
	}
	lease, err := kv.LeaseOf(ls)
	if errors.Is(err, kv.ErrLeaseNotFound) {
		return st, l, false, nil
	}
	return st, l, err == nil && lease.State == kv.LeaseLive, err
}

// leaderResponse is etcd's view of the leader l of election name at st:
// the leader's key, value and lease, mod_revision the register's version
// (the token after the campaign, higher after each proclaim).
// create_revision and version are 0: the register keeps no record of
// the acquire's version apart from the token the campaign returned.
func (s *Server) leaderResponse(name string, st protocol.State, l kv.Lock) *v3electionpb.LeaderResponse {
	v := kv.CurrentVersion(st)
	return &v3electionpb.LeaderResponse{Header: s.header(v), Kv: &mvccpb.KeyValue{
		Key: []byte(holdKey(name, l.Holder)), Value: l.Value, ModRevision: int64(v), Lease: int64(l.Holder)}}
}

// Observe serves Election/Observe: the leader when the stream opens, if
// any, then the leader at each change of the election's register (a new
// leader, a proclaim), waiting on a watch between them. Changes are
// coalesced as a watch's: a fast run of proclaims may show only the
// last. A leadership's end shows nothing until the next leader, as in
// etcd. The stream holds no admission slot; each read has the request
// timeout.
func (e electionService) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := stream.Context()
	name := string(r.GetName())
	if err := kv.CheckLockName(name); err != nil {
		return statusOf(err)
	}
	if e.s.cfg.Watches == nil {
		return statusOf(errLockNoWatches)
	}
	if err := e.s.authorizeWait(ctx, name, auth.PermRead); err != nil {
		return statusOf(err)
	}
	var sent uint64 // the version last sent
	for {
		rctx, cancel := context.WithTimeout(ctx, e.s.cfg.RequestTimeout)
		st, l, led, err := e.s.leader(rctx, name)
		cancel()
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if err != nil {
			return statusOf(err)
		}
		if v := kv.CurrentVersion(st); led && v != sent {
			if err := stream.Send(e.s.leaderResponse(name, st, l)); err != nil {
				return err
			}
			sent = v
		}
		err = clientapi.WaitChange(ctx, e.s.cfg.Watches, map[string]uint64{kv.LockKey(name): kv.CurrentVersion(st)})
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if err != nil {
			return statusOf(err)
		}
	}
}
