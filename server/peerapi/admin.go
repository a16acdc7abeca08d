package peerapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// MaxScanKeys bounds the keys one ScanKeys call returns, whatever the
// caller asks for.
const MaxScanKeys = 1 << 14

// maxScanBytes bounds the keys and values of one ScanRegisters reply, well
// within gRPC's 4 MiB message limit (one entry past it, at most one value
// of kv's largest, is still sent).
const maxScanBytes = 2 << 20

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
	Fences() (membership.Fences, error)
	CopyFences(ctx context.Context, f membership.Fences) error
	// ScanKeys returns up to limit keys of the acceptor at or after start.
	ScanKeys(start string, limit int) ([]string, error)
	// ScanRegisters is list.ScanSettled over the acceptor's store.
	ScanRegisters(ctx context.Context, r list.Range) (protocol.ListReply, error)
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
		Controls: info.Controls, ChangeId: info.ChangeID, ClientAddr: info.ClientAddr}, nil
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
	return &peerpb.FencesReply{Ages: agesToWire(f.Ages), Counter: f.Counter}, nil
}

func (s adminServer) SetFences(ctx context.Context, r *peerpb.FencesReply) (*peerpb.SetFencesReply, error) {
	if err := s.a.CopyFences(ctx, membership.Fences{Ages: agesFromWire(r.GetAges()), Counter: r.GetCounter()}); err != nil {
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

func (s adminServer) ScanRegisters(ctx context.Context, r *peerpb.ScanRegistersRequest) (*peerpb.ScanRegistersReply, error) {
	rg := list.Range{Prefix: string(r.GetPrefix()), Start: string(r.GetStart()),
		Limit: int(min(max(r.GetLimit(), 1), MaxScanKeys)), MaxBytes: int(min(max(r.GetMaxBytes(), 1), maxScanBytes)),
		MaxValueBytes: int(r.GetMaxValueBytes()), KeysOnly: r.GetKeysOnly()}
	rep, err := s.a.ScanRegisters(ctx, rg)
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	out := &peerpb.ScanRegistersReply{More: rep.More, Registers: make([]*peerpb.ScannedRegister, len(rep.Entries))}
	for i, e := range rep.Entries {
		g := e.Register
		out.Registers[i] = &peerpb.ScannedRegister{Key: []byte(e.Key),
			PromiseCounter: g.Promise.Counter, PromiseProposer: uint64(g.Promise.Proposer),
			AcceptedCounter: g.Accepted.Counter, AcceptedProposer: uint64(g.Accepted.Proposer),
			Value: g.State.Value, Version: g.State.Version, Deleted: g.State.Deleted, ValueOmitted: e.ValueOmitted, Created: g.State.Created,
			Lease: g.State.Lease, Flags: g.State.Flags, LockIndex: g.State.LockIndex}
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
// per node (peer address and name). It implements membership.Peers. Close
// ends every connection; a call after it fails.
type AdminClients struct {
	// TLS, if set, makes every connection mutual TLS (a TLS peer port
	// takes nothing else) with the node's peer certificate, verified
	// against the peer CA; and the node that answers must present a
	// certificate naming the member it was asked for, by a DNS SAN or its
	// common name, as a link's does (transport/tls.go). Without the name
	// check, anyone at a member's address (or spoofing it) with any
	// certificate of the peer CA, a removed node's say, could answer for
	// the member: fake its Info (and make this node think it was removed),
	// its Settled or ScanKeys (and corrupt a catch-up). Nil: plain TCP.
	TLS *certs.Source

	mu     sync.Mutex
	conns  map[adminTarget]*grpc.ClientConn
	closed bool
}

// adminTarget is what one connection reaches: the node called name at
// addr. A name given at another address (a replaced node), or another
// name at the same address, gets a connection of its own, verified for
// that name.
type adminTarget struct{ addr, name string }

var _ membership.Peers = (*AdminClients)(nil)

// errNoName: a TLS connection must know whom it reaches.
var errNoName = errors.New("caspaxos/peerapi: a node reached over TLS needs its member name")

func (p *AdminClients) client(to membership.Member) (peerpb.AdminClient, error) {
	c, err := p.conn(to)
	if err != nil {
		return nil, err
	}
	return peerpb.NewAdminClient(c), nil
}

// conn returns the connection to node to, made on first use; the Watch
// service's streams share it.
func (p *AdminClients) conn(to membership.Member) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("caspaxos/peerapi: the node is stopping")
	}
	key := adminTarget{to.PeerAddr, to.Name}
	if c := p.conns[key]; c != nil {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if p.TLS != nil {
		cfg, err := p.tlsTo(to.Name)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	c, err := grpc.NewClient(to.PeerAddr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: adminMinConnectTimeout,
			Backoff: backoff.Config{BaseDelay: adminRetryBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: adminRetryMax}}))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[adminTarget]*grpc.ClientConn{}
	}
	p.conns[key] = c
	return c, nil
}

// tlsTo is the TLS configuration of a connection to the node called name:
// the handshake fails unless its certificate names name.
func (p *AdminClients) tlsTo(name string) (*tls.Config, error) {
	if name == "" {
		return nil, errNoName
	}
	return p.TLS.ClientConfig(func(leaf *x509.Certificate) error {
		if !certs.HasName(leaf, name) {
			return fmt.Errorf("caspaxos/peerapi: the node asked for as %q answered with a certificate naming %q", name, certs.Names(leaf))
		}
		return nil
	})
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

// Info asks node to about itself (to.ID may be 0: unknown yet), as caller
// (0: unnamed) of incarnation (which it records if it lists caller and
// knows none; "": nothing to record).
func (p *AdminClients) Info(ctx context.Context, to membership.Member, caller protocol.NodeID, incarnation string) (membership.PeerInfo, error) {
	c, err := p.client(to)
	if err != nil {
		return membership.PeerInfo{}, err
	}
	r, err := c.Info(ctx, &peerpb.InfoRequest{Caller: uint64(caller), CallerIncarnation: incarnation})
	if err != nil {
		return membership.PeerInfo{}, err
	}
	return membership.PeerInfo{Name: r.GetName(), ID: protocol.NodeID(r.GetId()), Version: r.GetVersion(), Changing: r.GetChanging(),
		Incarnation: r.GetIncarnation(), CallerListed: r.CallerListed, CallerIncarnation: r.GetCallerIncarnation(),
		Controls: r.Controls, ChangeID: r.GetChangeId(), ClientAddr: r.GetClientAddr()}, nil
}

// SetState implements membership.Peers.
func (p *AdminClients) SetState(ctx context.Context, to membership.Member, st membership.NodeState) error {
	c, err := p.client(to)
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
	c, err := p.client(to)
	if err != nil {
		return false, err
	}
	r, err := c.Settled(ctx, &peerpb.SettledRequest{Version: version})
	return r.GetSettled(), err
}

// Fences implements membership.Peers.
func (p *AdminClients) Fences(ctx context.Context, to membership.Member) (membership.Fences, error) {
	c, err := p.client(to)
	if err != nil {
		return membership.Fences{}, err
	}
	r, err := c.Fences(ctx, &peerpb.FencesRequest{})
	if err != nil {
		return membership.Fences{}, err
	}
	return membership.Fences{Ages: agesFromWire(r.GetAges()), Counter: r.GetCounter()}, nil
}

// SetFences implements membership.Peers.
func (p *AdminClients) SetFences(ctx context.Context, to membership.Member, f membership.Fences) error {
	c, err := p.client(to)
	if err != nil {
		return err
	}
	_, err = c.SetFences(ctx, &peerpb.FencesReply{Ages: agesToWire(f.Ages), Counter: f.Counter})
	return err
}

// ScanKeys implements membership.Peers.
func (p *AdminClients) ScanKeys(ctx context.Context, to membership.Member, start string, limit int) ([]string, error) {
	c, err := p.client(to)
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

// ScanRegisters asks node to for its registers of r (list.Acceptors).
func (p *AdminClients) ScanRegisters(ctx context.Context, to membership.Member, r list.Range) (protocol.ListReply, error) {
	c, err := p.client(to)
	if err != nil {
		return protocol.ListReply{}, err
	}
	w, err := c.ScanRegisters(ctx, &peerpb.ScanRegistersRequest{Prefix: []byte(r.Prefix), Start: []byte(r.Start),
		Limit: uint32(r.Limit), MaxBytes: uint32(r.MaxBytes), MaxValueBytes: uint32(r.MaxValueBytes), KeysOnly: r.KeysOnly})
	if err != nil {
		return protocol.ListReply{}, err
	}
	rep := protocol.ListReply{More: w.GetMore(), Entries: make([]protocol.ListEntry, len(w.GetRegisters()))}
	for i, g := range w.GetRegisters() {
		rep.Entries[i] = protocol.ListEntry{Key: string(g.GetKey()), ValueOmitted: g.GetValueOmitted(), Register: protocol.Register{
			Promise:  protocol.Ballot{Counter: g.GetPromiseCounter(), Proposer: protocol.NodeID(g.GetPromiseProposer())},
			Accepted: protocol.Ballot{Counter: g.GetAcceptedCounter(), Proposer: protocol.NodeID(g.GetAcceptedProposer())},
			State: protocol.State{Value: g.GetValue(), Version: g.GetVersion(), Deleted: g.GetDeleted(), Created: g.GetCreated(),
				Attrs: protocol.Attrs{Lease: g.GetLease(), Flags: g.GetFlags(), LockIndex: g.GetLockIndex()}}}}
	}
	return rep, nil
}

// ReleaseHold asks node to to free itself of the membership change
// holding it (membership.ErrHoldInUse if it refused).
func (p *AdminClients) ReleaseHold(ctx context.Context, to membership.Member, force bool) (membership.Hold, error) {
	c, err := p.client(to)
	if err != nil {
		return membership.Hold{}, err
	}
	r, err := c.ReleaseHold(ctx, &peerpb.ReleaseHoldRequest{Force: force})
	if err != nil {
		return membership.Hold{}, fromStatus(err, membership.ErrHoldInUse)
	}
	return membership.Hold{Released: r.GetReleased(), Controller: r.GetController(), ChangeID: r.GetChangeId()}, nil
}
