package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// etcd's Lease service on caspaxos's leases (kv/lease.go, docs/leases.md):
// each etcd lease is the lease register of the same ID (etcd's int64 IDs
// are the uint64 IDs' bits), and each call runs the operation the client
// port's call runs, with the same permission check (write on the lease's
// reserved key, read for TimeToLive and for each lease LeaseLeases shows).
// TTLs are whole seconds, as etcd's.
//
// What differs from etcd: TimeToLive with keys is refused (the keys a
// Put attached to a lease are deleted when it ends, docs/leases.md, but
// not listed); a lease expires by
// a committed change, no earlier than its TTL after the send of its last
// acknowledged keep-alive, and up to the skew bound plus the reaper's
// interval later (docs/leases.md); TimeToLive's TTL is the time left by
// the answering node's clock until the last renewal + TTL, a hint, while
// the committed state decides whether the lease is live.

// The messages etcd's clients match on (clientv3's rpctypes).
const (
	msgLeaseNotFound = "etcdserver: requested lease not found"
	msgLeaseExists   = "etcdserver: lease already exists"
	msgLeaseTTLLarge = "etcdserver: too large lease TTL"
)

// errLeaseKeys: the keys attached to a lease are not listed.
var errLeaseKeys = fmt.Errorf("%w: TimeToLive with keys: the keys attached to a lease are not listed (each node indexes only the keys it stores; there is no cluster-wide list of them yet); ask without keys", errUnsupported)

// leaseStatus maps a lease call's error: etcd's messages for a lease not
// found or already granted, statusOf otherwise.
func leaseStatus(err error) error {
	switch {
	case errors.Is(err, kv.ErrLeaseNotFound):
		return status.Error(codes.NotFound, msgLeaseNotFound)
	case errors.Is(err, kv.ErrLeaseExists):
		return status.Error(codes.FailedPrecondition, msgLeaseExists)
	}
	return statusOf(err)
}

// ttlSeconds is a TTL in etcd's whole seconds: rounded down, so that a
// holder never counts on more than it has, but at least 1 (0 would say the
// lease is gone), which only a TTL under a second, granted on the client
// port, overstates.
func ttlSeconds(ms int64) int64 { return max(ms/1000, 1) }

// lease runs a lease operation for the call: op checked, perm on the
// lease's key, and the lease after it (kv.ErrLeaseNotFound for a read of
// a lease that is not live).
func (c *call) lease(op kv.Op, perm auth.Perm) (kv.Lease, error) {
	if op.Kind != kv.OpGet {
		if err := op.Validate(c.s.cfg.Limits); err != nil {
			return kv.Lease{}, err
		}
	}
	if err := c.allowed(auth.Access{Perm: perm, Key: op.Key}); err != nil {
		return kv.Lease{}, err
	}
	st, err := c.s.b.Do(c.ctx, op)
	if err != nil {
		return kv.Lease{}, err
	}
	l, err := kv.LeaseOf(st)
	if err == nil && op.Kind == kv.OpGet && l.State != kv.LeaseLive {
		err = kv.ErrLeaseNotFound
	}
	return l, err
}

// LeaseGrant serves Lease.LeaseGrant: ID 0 lets the node pick one; a TTL
// below a second is raised to one (etcd raises it to its minimum too), one
// above kv.MaxLeaseTTL is refused.
func (s *Server) LeaseGrant(ctx context.Context, r *etcdpb.LeaseGrantRequest) (*etcdpb.LeaseGrantResponse, error) {
	ttl := max(r.GetTTL(), 1)
	if ttl > int64(kv.MaxLeaseTTL/time.Second) {
		return nil, status.Error(codes.OutOfRange, fmt.Sprintf("%s: %d s is over caspaxos's %v", msgLeaseTTLLarge, r.GetTTL(), kv.MaxLeaseTTL))
	}
	id := uint64(r.GetID())
	if id == 0 {
		var err error
		if id, err = kv.NewLeaseID(); err != nil {
			return nil, statusOf(err)
		}
	}
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	l, err := c.lease(kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: ttl * 1000}, auth.PermWrite)
	if err != nil {
		return nil, leaseStatus(err)
	}
	return &etcdpb.LeaseGrantResponse{Header: s.header(0), ID: int64(id), TTL: ttlSeconds(l.TTLMillis)}, nil
}

// LeaseRevoke serves Lease.LeaseRevoke.
func (s *Server) LeaseRevoke(ctx context.Context, r *etcdpb.LeaseRevokeRequest) (*etcdpb.LeaseRevokeResponse, error) {
	if r.GetID() == 0 {
		return nil, leaseStatus(kv.ErrLeaseNotFound)
	}
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	if _, err := c.lease(kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(uint64(r.GetID()))}, auth.PermWrite); err != nil {
		return nil, leaseStatus(err)
	}
	return &etcdpb.LeaseRevokeResponse{Header: s.header(0)}, nil
}

// LeaseTimeToLive serves Lease.LeaseTimeToLive: a lease that is not live
// is answered with TTL -1, as etcd answers it; keys is refused.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *etcdpb.LeaseTimeToLiveRequest) (*etcdpb.LeaseTimeToLiveResponse, error) {
	if r.GetKeys() {
		return nil, statusOf(errLeaseKeys)
	}
	resp := &etcdpb.LeaseTimeToLiveResponse{Header: s.header(0), ID: r.GetID(), TTL: -1}
	if r.GetID() == 0 {
		return resp, nil
	}
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	l, err := c.lease(kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(uint64(r.GetID()))}, auth.PermRead)
	switch {
	case errors.Is(err, kv.ErrLeaseNotFound):
		return resp, nil
	case err != nil:
		return nil, statusOf(err)
	}
	resp.GrantedTTL = ttlSeconds(l.TTLMillis)
	resp.TTL = remaining(l, time.Now())
	return resp, nil
}

// remaining is a live lease's TTL left at now, in whole seconds rounded
// down (as etcd does), 0 once past: the answering node's clock against the
// renewing proposer's, so a hint (the committed state decides).
func remaining(l kv.Lease, now time.Time) int64 {
	return max(0, (l.RenewedMillis+l.TTLMillis-now.UnixMilli())/1000)
}

// LeaseLeases serves Lease.LeaseLeases: the live leases the caller may
// read, from the listing of the lease key space (server/list: every lease
// live through the call is listed; not a snapshot).
func (s *Server) LeaseLeases(ctx context.Context, _ *etcdpb.LeaseLeasesRequest) (*etcdpb.LeaseLeasesResponse, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	resp := &etcdpb.LeaseLeasesResponse{Header: s.header(0)}
	allow := func(key string) (bool, error) {
		err := c.allowed(auth.Access{Perm: auth.PermRead, Key: key})
		if errors.Is(err, kv.ErrPermissionDenied) {
			return false, nil
		}
		return err == nil, err
	}
	req := kv.ListRequest{Prefix: kv.LeasePrefix, Limit: kv.MaxListLimit}
	for {
		last := ""
		more, err := s.b.List(c.ctx, req, allow, func(it kv.ListItem) error {
			last = it.Key
			id, err := strconv.ParseUint(strings.TrimPrefix(it.Key, kv.LeasePrefix), 16, 64)
			if err != nil || !kv.IsLeaseKey(it.Key) {
				return nil // not a lease's key
			}
			var l kv.Lease
			if it.ValueOmitted { // never for a lease's few bytes, but read it then
				l, err = c.lease(kv.Op{Kind: kv.OpGet, Key: it.Key}, auth.PermRead)
			} else {
				l, err = kv.DecodeLease(it.Value)
			}
			switch {
			case errors.Is(err, kv.ErrLeaseNotFound):
			case err != nil:
				return err
			case l.State == kv.LeaseLive:
				resp.Leases = append(resp.Leases, &etcdpb.LeaseStatus{ID: int64(id)})
			}
			return nil
		})
		if err != nil {
			return nil, statusOf(err)
		}
		if !more || last == "" {
			return resp, nil
		}
		req.After = last
	}
}

// LeaseKeepAlive serves Lease.LeaseKeepAlive, etcd's keep-alive stream:
// each request renews its lease (the client port's keep-alive, with its
// permission check, per lease) and is answered, in order, with the lease's
// granted TTL, or TTL 0 when it is not live (etcd's answer: clientv3 then
// ends that lease's keep-alive). Any other error ends the stream, as etcd
// ends it; clientv3 opens another. The stream authenticates once, when it
// opens; each renewal takes an admission slot and the request timeout.
func (s *Server) LeaseKeepAlive(st etcdpb.Lease_LeaseKeepAliveServer) error {
	p := auth.Principal{Open: true}
	if s.cfg.Guard != nil {
		var err error
		if p, err = s.cfg.Guard.Authenticate(st.Context(), credentialsOf(st.Context())); err != nil {
			return statusOf(err)
		}
	}
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := s.renew(st.Context(), p, r.GetID())
		if err != nil {
			return statusOf(err)
		}
		if err := st.Send(&etcdpb.LeaseKeepAliveResponse{Header: s.header(0), ID: r.GetID(), TTL: ttl}); err != nil {
			return err
		}
	}
}

// renew renews lease id for p: its granted TTL in seconds, 0 if it is not
// live.
func (s *Server) renew(ctx context.Context, p auth.Principal, id int64) (int64, error) {
	if id == 0 {
		return 0, nil
	}
	release, err := s.cfg.Admission.Admit()
	if err != nil {
		return 0, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	c := &call{ctx: ctx, p: p, s: s}
	l, err := c.lease(kv.Op{Kind: kv.OpLeaseKeepAlive, Key: kv.LeaseKey(uint64(id))}, auth.PermWrite)
	switch {
	case errors.Is(err, kv.ErrLeaseNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return ttlSeconds(l.TTLMillis), nil
}
