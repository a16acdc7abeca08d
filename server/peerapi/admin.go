package peerapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// MaxScanKeys bounds the keys one ScanKeys call returns, whatever the
// caller asks for.
const MaxScanKeys = 1 << 14

// Admin is what the Admin service asks of the node that serves it. Its
// errors are those of errors.go's table; Unavailable marks a refusal for
// now.
type Admin interface {
	// Info describes the node to caller (0: unnamed), recording
	// callerIncarnation if the node lists caller and knows none.
	Info(ctx context.Context, caller protocol.NodeID, callerIncarnation string) (membership.PeerInfo, error)
	// SetState is membership.Keeper.Set.
	SetState(ctx context.Context, st membership.NodeState) error
	// Settled is membership.Keeper.Settled.
	Settled(ctx context.Context, version uint64) (bool, error)
	// Fences returns the acceptor's persisted GC age fences; CopyFences
	// raises them.
	Fences() (map[protocol.NodeID]uint64, error)
	CopyFences(ages map[protocol.NodeID]uint64) error
	// ScanKeys returns up to limit keys of the acceptor at or after start.
	ScanKeys(start string, limit int) ([]string, error)
	// ReleaseHold frees the node of the membership change holding it
	// (membership.ErrHoldInUse if the change still runs, or cannot be asked without
	// force).
	ReleaseHold(ctx context.Context, force bool) (membership.Hold, error)
}

// adminServer serves the Admin service over an Admin.
type adminServer struct {
	peerpb.UnimplementedAdminServer
	a Admin
}

func (s adminServer) Info(ctx context.Context, r *peerpb.InfoRequest) (*peerpb.InfoReply, error) {
	info, err := s.a.Info(ctx, protocol.NodeID(r.GetCaller()), r.GetCallerIncarnation())
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.InfoReply{Name: info.Name, Id: uint64(info.ID), Version: info.Version, Changing: info.Changing,
		Incarnation: info.Incarnation, CallerListed: info.CallerListed, CallerIncarnation: info.CallerIncarnation,
		Controls: info.Controls, ChangeId: info.ChangeID}, nil
}

func (s adminServer) SetState(ctx context.Context, r *peerpb.SetStateRequest) (*peerpb.SetStateReply, error) {
	var st membership.NodeState
	if err := json.Unmarshal(r.GetStateJson(), &st); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errBadRequest, err), codes.InvalidArgument)
	}
	if err := s.a.SetState(ctx, st); err != nil {
		return nil, toStatus(err, codes.FailedPrecondition)
	}
	return &peerpb.SetStateReply{}, nil
}

func (s adminServer) Settled(ctx context.Context, r *peerpb.SettledRequest) (*peerpb.SettledReply, error) {
	ok, err := s.a.Settled(ctx, r.GetVersion())
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.SettledReply{Settled: ok}, nil
}

func (s adminServer) Fences(context.Context, *peerpb.FencesRequest) (*peerpb.FencesReply, error) {
	f, err := s.a.Fences()
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.FencesReply{Ages: agesToWire(f)}, nil
}

func (s adminServer) SetFences(_ context.Context, r *peerpb.FencesReply) (*peerpb.SetFencesReply, error) {
	if err := s.a.CopyFences(agesFromWire(r.GetAges())); err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.SetFencesReply{}, nil
}

func (s adminServer) ScanKeys(_ context.Context, r *peerpb.ScanKeysRequest) (*peerpb.ScanKeysReply, error) {
	limit := int(min(max(r.GetLimit(), 1), MaxScanKeys))
	keys, err := s.a.ScanKeys(string(r.GetStart()), limit)
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	out := &peerpb.ScanKeysReply{Keys: make([][]byte, len(keys))}
	for i, k := range keys {
		out.Keys[i] = []byte(k)
	}
	return out, nil
}

func (s adminServer) ReleaseHold(ctx context.Context, r *peerpb.ReleaseHoldRequest) (*peerpb.ReleaseHoldReply, error) {
	h, err := s.a.ReleaseHold(ctx, r.GetForce())
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.ReleaseHoldReply{Released: h.Released, Controller: h.Controller, ChangeId: h.ChangeID}, nil
}

// The Admin clients' connection: a call waits for a (re)starting peer
// within its deadline, and the peer's address is retried often, since a
// replaced node comes back at the same address.
const (
	adminMinConnectTimeout = time.Second
	adminRetryBase         = 20 * time.Millisecond
	adminRetryMax          = 500 * time.Millisecond
)

// AdminClients reaches the Admin service of other nodes, one connection
// per peer address. It implements membership.Peers. Close ends every
// connection; a call after it fails.
type AdminClients struct {
	// TLS, if set, is the configuration of every connection (the node's
	// peer certificate, the peer CA): a TLS peer port takes nothing else.
	// Nil: plain TCP.
	TLS *tls.Config

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

var _ membership.Peers = (*AdminClients)(nil)

func (p *AdminClients) client(addr string) (peerpb.AdminClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("caspaxos/peerapi: the node is stopping")
	}
	if c := p.conns[addr]; c != nil {
		return peerpb.NewAdminClient(c), nil
	}
	creds := insecure.NewCredentials()
	if p.TLS != nil {
		creds = credentials.NewTLS(p.TLS)
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: adminMinConnectTimeout,
			Backoff: backoff.Config{BaseDelay: adminRetryBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: adminRetryMax}}))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return peerpb.NewAdminClient(c), nil
}

// Close ends every connection.
func (p *AdminClients) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns, p.closed = nil, true
}

// Info asks the node at addr about itself, as caller (0: unnamed) of
// incarnation (which it records if it lists caller and knows none; "":
// nothing to record).
func (p *AdminClients) Info(ctx context.Context, addr string, caller protocol.NodeID, incarnation string) (membership.PeerInfo, error) {
	c, err := p.client(addr)
	if err != nil {
		return membership.PeerInfo{}, err
	}
	r, err := c.Info(ctx, &peerpb.InfoRequest{Caller: uint64(caller), CallerIncarnation: incarnation})
	if err != nil {
		return membership.PeerInfo{}, err
	}
	return membership.PeerInfo{Name: r.GetName(), ID: protocol.NodeID(r.GetId()), Version: r.GetVersion(), Changing: r.GetChanging(),
		Incarnation: r.GetIncarnation(), CallerListed: r.CallerListed, CallerIncarnation: r.GetCallerIncarnation(),
		Controls: r.Controls, ChangeID: r.GetChangeId()}, nil
}

// SetState implements membership.Peers.
func (p *AdminClients) SetState(ctx context.Context, to membership.Member, st membership.NodeState) error {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = c.SetState(ctx, &peerpb.SetStateRequest{StateJson: b})
	return fromStatus(err, membership.ErrMembershipHeld, membership.ErrMembershipOlder, membership.ErrMembershipConflict)
}

// Settled implements membership.Peers.
func (p *AdminClients) Settled(ctx context.Context, to membership.Member, version uint64) (bool, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return false, err
	}
	r, err := c.Settled(ctx, &peerpb.SettledRequest{Version: version})
	return r.GetSettled(), err
}

// Fences implements membership.Peers.
func (p *AdminClients) Fences(ctx context.Context, to membership.Member) (map[protocol.NodeID]uint64, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return nil, err
	}
	r, err := c.Fences(ctx, &peerpb.FencesRequest{})
	if err != nil {
		return nil, err
	}
	return agesFromWire(r.GetAges()), nil
}

// SetFences implements membership.Peers.
func (p *AdminClients) SetFences(ctx context.Context, to membership.Member, ages map[protocol.NodeID]uint64) error {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return err
	}
	_, err = c.SetFences(ctx, &peerpb.FencesReply{Ages: agesToWire(ages)})
	return err
}

// ScanKeys implements membership.Peers.
func (p *AdminClients) ScanKeys(ctx context.Context, to membership.Member, start string, limit int) ([]string, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return nil, err
	}
	r, err := c.ScanKeys(ctx, &peerpb.ScanKeysRequest{Start: []byte(start), Limit: uint32(limit)})
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(r.GetKeys()))
	for i, k := range r.GetKeys() {
		keys[i] = string(k)
	}
	return keys, nil
}

// ReleaseHold asks the node at addr to free itself of the membership
// change holding it (membership.ErrHoldInUse if it refused).
func (p *AdminClients) ReleaseHold(ctx context.Context, addr string, force bool) (membership.Hold, error) {
	c, err := p.client(addr)
	if err != nil {
		return membership.Hold{}, err
	}
	r, err := c.ReleaseHold(ctx, &peerpb.ReleaseHoldRequest{Force: force})
	if err != nil {
		return membership.Hold{}, fromStatus(err, membership.ErrHoldInUse)
	}
	return membership.Hold{Released: r.GetReleased(), Controller: r.GetController(), ChangeID: r.GetChangeId()}, nil
}
