package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3lockpb"
	"github.com/caspaxos/caspaxos/server/lock"
)

// etcd's v3lock and v3election services on caspaxos's native locks
// (kv/lock.go, server/lock, docs/locks.md). etcd builds both from
// clientv3's concurrency package: one key per waiter under the name,
// ranked by create_revision across keys, which per-key revisions cannot
// give. Here a lock or an election NAME is the one register
// kv.LockKey(NAME), held by a lease:
//
//	Lock, Campaign  lock.Acquire, waiting on a watch (no polling, no
//	                admission slot while waiting) until the caller's
//	                context ends: etcd's calls wait as long as that too
//	Unlock, Resign  kv.LockRelease; a lease that no longer holds the lock
//	                (released, or broken after its lease ended) is
//	                answered OK, as etcd's delete of a gone key is
//	Proclaim        kv.LockProclaim; etcd's "election: not leader" when
//	                the lease does not lead
//	Leader          a read of the register, and of the holder's lease:
//	                etcd's "election: no leader" when free or when the
//	                holder's lease is no longer live (etcd deletes the
//	                leader's key with its lease)
//	Observe         the leader at the start, then at each change of the
//	                register (a watch; changes coalesced, as a watch's)
//
// The fencing token is the register's version after the acquire: Lock's
// header.revision, Campaign's header.revision and LeaderKey.rev. The hold's
// key (Lock's key, LeaderKey.key) is etcd's form, NAME/LEASE (the lease ID
// in hex); Unlock parses it back. A lock whose holder's lease ended is
// broken by the next acquirer, and taken after Config.LockDelay (the lock
// delay of docs/locks.md). Permissions are the client port's lock routes':
// NAME guarded as a key, write to lock, unlock, campaign, proclaim and
// resign, read to see the leader.

// The messages etcd's election clients match on (clientv3's concurrency
// package; etcd's server returns them as plain errors, so with gRPC's
// Unknown code).
const (
	msgElectionNotLeader = "election: not leader"
	msgElectionNoLeader  = "election: no leader"
	msgMissingLeaderKey  = `"leader" field must be provided`
)

var (
	errNotLeader = status.Error(codes.Unknown, msgElectionNotLeader)
	errNoLeader  = status.Error(codes.Unknown, msgElectionNoLeader)
	// errLockNoWatches: the node was built without watches, which a
	// waiting call needs.
	errLockNoWatches = fmt.Errorf("%w: locks and elections wait on watches, which this node does not serve", errUnsupported)
)

// holdKey is the opaque key of name's hold by lease: etcd's NAME/LEASE.
func holdKey(name string, lease uint64) string {
	return name + "/" + strconv.FormatUint(lease, 16)
}

// parseHoldKey reads a holdKey back: the name before the last '/', the
// lease ID in lower-case hex after it (not 0, no leading zeros), so that
// exactly the keys holdKey makes are accepted.
func parseHoldKey(key string) (name string, lease uint64, err error) {
	i := strings.LastIndexByte(key, '/')
	if i <= 0 {
		return "", 0, fmt.Errorf("%w: lock key %q is not NAME/LEASE as Lock returns it", errBadRequest, key)
	}
	name = key[:i]
	lease, err = strconv.ParseUint(key[i+1:], 16, 64)
	if err != nil || lease == 0 || holdKey(name, lease) != key {
		return "", 0, fmt.Errorf("%w: lock key %q does not end in a lease ID in hex as Lock returns it", errBadRequest, key)
	}
	return name, lease, nil
}

// checkLock refuses a lock call's malformed name, lease or value.
func (s *Server) checkLock(name string, lease int64, value []byte) error {
	if err := kv.CheckLockName(name); err != nil {
		return err
	}
	if err := s.cfg.Limits.CheckKey(kv.LockKey(name)); err != nil {
		return err
	}
	if lease == 0 {
		return fmt.Errorf("%w: a lock or a campaign needs a lease (grant one with LeaseGrant)", errBadRequest)
	}
	return s.cfg.Limits.CheckValue(value)
}

// authorizeWait authenticates a call that waits (Lock, Campaign,
// Observe) and checks perm on the lock's name (guarded as a key, as on
// the client port). It takes no admission slot: a wait is no operation in
// flight.
func (s *Server) authorizeWait(ctx context.Context, name string, perm auth.Perm) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	c := &call{ctx: ctx, p: auth.Principal{Open: true}, s: s}
	if s.cfg.Guard != nil {
		var err error
		if c.p, err = s.cfg.Guard.Authenticate(ctx, credentialsOf(ctx)); err != nil {
			return err
		}
	}
	return c.allowed(auth.Access{Perm: perm, Key: name})
}

// admittedLockCall authenticates a lock call that does not wait, checks
// perm on the lock's name, and takes an admission slot and the request
// timeout.
func (s *Server) admittedLockCall(ctx context.Context, name string, perm auth.Perm) (*call, context.CancelFunc, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := c.allowed(auth.Access{Perm: perm, Key: name}); err != nil {
		done()
		return nil, nil, err
	}
	return c, done, nil
}

// acquire takes the lock name for lease (with an election's value),
// waiting until it is held or ctx ends, and returns the register's state
// after the acquire (its version is the token). A caller that gives up
// while an acquire may have been proposed gets a release of what it may
// have taken, so that no hold is left that nobody knows of (a lease that
// held the lock before the call loses it too, as etcd's Campaign resigns
// when its caller gives up).
func (s *Server) acquire(ctx context.Context, name string, lease int64, value []byte) (protocol.State, error) {
	if err := s.checkLock(name, lease, value); err != nil {
		return protocol.State{}, err
	}
	if s.cfg.Watches == nil {
		return protocol.State{}, errLockNoWatches
	}
	if err := s.authorizeWait(ctx, name, auth.PermWrite); err != nil {
		return protocol.State{}, err
	}
	if err := s.leaseLive(ctx, uint64(lease)); err != nil {
		return protocol.State{}, err
	}
	d := lock.Deps{Do: s.b.Do, Wait: func(ctx context.Context, from map[string]uint64) error {
		return clientapi.WaitChange(ctx, s.cfg.Watches, from)
	}}
	req := lock.Request{Name: name, Lease: uint64(lease), Delay: s.cfg.LockDelay, Value: value}
	for {
		// Each round waits up to kv.MaxLockWait, its operations having the
		// request timeout after it; the call waits on until ctx ends.
		rctx, cancel := context.WithTimeout(ctx, kv.MaxLockWait+s.cfg.RequestTimeout)
		st, err := lock.Acquire(rctx, d, req, kv.MaxLockWait)
		cancel()
		switch {
		case err == nil:
			return st, nil
		case ctx.Err() != nil:
			s.releaseAbandoned(name, uint64(lease))
			return protocol.State{}, status.FromContextError(ctx.Err()).Err()
		case errors.Is(err, kv.ErrLocked):
			continue
		}
		if code, _ := kv.Code(err); code == kv.CodeUnknownOutcome {
			s.releaseAbandoned(name, uint64(lease))
		}
		return protocol.State{}, err
	}
}

// leaseLive refuses, before any wait, a lease that is not live, as etcd
// refuses a Lock with such a lease at once (lock.Acquire checks it again
// before each acquire).
func (s *Server) leaseLive(ctx context.Context, lease uint64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	st, err := s.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(lease)})
	if err != nil {
		return err
	}
	l, err := kv.LeaseOf(st)
	if err == nil && l.State != kv.LeaseLive {
		err = fmt.Errorf("%w: lease %x is %v", kv.ErrLeaseNotFound, lease, l.State)
	}
	return err
}

// releaseAbandoned releases name's lock if lease holds it, after an
// acquire whose outcome its caller will not learn.
func (s *Server) releaseAbandoned(name string, lease uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	_, _ = s.b.Do(ctx, kv.LockReleaseOp(name, lease, 0)) // whatever hold it may have
}

// release releases name's lock held by lease in the hold of token (0:
// any; etcd's Unlock key names none, Resign's leader key does): the
// register's state after, or, when the lease no longer holds it, the zero
// state and no error (as etcd's Unlock and Resign, deletes of a key that
// may be gone, answer).
func (s *Server) release(ctx context.Context, name string, lease, token uint64) (protocol.State, error) {
	if err := s.checkLock(name, int64(lease), nil); err != nil {
		return protocol.State{}, err
	}
	c, done, err := s.admittedLockCall(ctx, name, auth.PermWrite)
	if err != nil {
		return protocol.State{}, err
	}
	defer done()
	st, err := s.b.Do(c.ctx, kv.LockReleaseOp(name, lease, token))
	if errors.Is(err, kv.ErrNotLockHolder) {
		return protocol.State{}, nil
	}
	return st, err
}

// lockService is etcd's v3lockpb.Lock service.
type lockService struct {
	v3lockpb.UnimplementedLockServer
	s *Server
}

// Lock serves v3lockpb.Lock/Lock: it waits until r's lease holds the lock
// (or the caller's context ends) and answers the hold's key, with the
// fencing token as header.revision.
func (l lockService) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	name := string(r.GetName())
	st, err := l.s.acquire(ctx, name, r.GetLease(), nil)
	if err != nil {
		return nil, statusOf(err)
	}
	return &v3lockpb.LockResponse{Header: l.s.header(kv.CurrentVersion(st)), Key: []byte(holdKey(name, uint64(r.GetLease())))}, nil
}

// Unlock serves v3lockpb.Lock/Unlock: it releases the hold of r's key;
// a hold already gone (released, or broken once its lease ended) is
// answered OK with header.revision 0.
func (l lockService) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	name, lease, err := parseHoldKey(string(r.GetKey()))
	if err != nil {
		return nil, statusOf(err)
	}
	st, err := l.s.release(ctx, name, lease, 0) // the hold key names no token (etcd's form, NAME/LEASE): any hold
	if err != nil {
		return nil, statusOf(err)
	}
	return &v3lockpb.UnlockResponse{Header: l.s.header(kv.CurrentVersion(st))}, nil
}
