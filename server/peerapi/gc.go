package peerapi

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// GC is what the GC service asks of the node that serves it: deletion GC's
// steps 2 to 4 on its proposer and acceptor (node.Node implements it).
type GC interface {
	Forget(ctx context.Context, tombs []protocol.Tombstone) (uint64, error)
	Fence(ages map[protocol.NodeID]uint64) error
	Collect(tombs []protocol.Tombstone) ([]bool, error)
}

// Register serves the Admin and GC services on s.
func Register(s *grpc.Server, a Admin, g GC) {
	peerpb.RegisterAdminServer(s, adminServer{a: a})
	peerpb.RegisterGCServer(s, gcServer{g: g})
}

// gcServer serves the GC service over a GC.
type gcServer struct {
	peerpb.UnimplementedGCServer
	g GC
}

func (s gcServer) Forget(ctx context.Context, r *peerpb.ForgetRequest) (*peerpb.ForgetReply, error) {
	age, err := s.g.Forget(ctx, tombstonesFromWire(r.GetTombstones()))
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.ForgetReply{Age: age}, nil
}

func (s gcServer) Fence(_ context.Context, r *peerpb.FenceRequest) (*peerpb.FenceReply, error) {
	if err := s.g.Fence(agesFromWire(r.GetAges())); err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.FenceReply{}, nil
}

func (s gcServer) Collect(_ context.Context, r *peerpb.CollectRequest) (*peerpb.CollectReply, error) {
	tombs := tombstonesFromWire(r.GetTombstones())
	seen := make(map[string]bool, len(tombs))
	for _, t := range tombs {
		if seen[t.Key] {
			return nil, status.Errorf(codes.InvalidArgument, "key %q twice", t.Key)
		}
		seen[t.Key] = true
	}
	done, err := s.g.Collect(tombs)
	if err != nil {
		return nil, toStatus(err, codes.Unavailable)
	}
	return &peerpb.CollectReply{Done: done}, nil
}

// GCPeers is a GC runner's gc.Peers on a network node: its own node
// directly, the others over their GC service.
type GCPeers struct {
	// Self is this node's ID, and Local its steps.
	Self  protocol.NodeID
	Local GC
	// Members returns the IDs of the membership in use: every proposer and
	// acceptor of a round.
	Members func() []protocol.NodeID
	// Ready fails while this node may not run a round (a joining node has
	// no cluster to collect in yet).
	Ready func() error
	// Dial returns the GC service of node id (never Self).
	Dial func(id protocol.NodeID) (peerpb.GCClient, error)
}

var _ gc.Peers = (*GCPeers)(nil)

// Proposers implements gc.Peers.
func (p *GCPeers) Proposers() []protocol.NodeID { return p.Members() }

// Acceptors implements gc.Peers.
func (p *GCPeers) Acceptors() []protocol.NodeID { return p.Members() }

// client returns the GC service of node id, not this node.
func (p *GCPeers) client(id protocol.NodeID) (peerpb.GCClient, error) {
	if err := p.Ready(); err != nil {
		return nil, err
	}
	c, err := p.Dial(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", server.ErrUnreachable, err)
	}
	return c, nil
}

// Forget implements gc.Peers.
func (p *GCPeers) Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (uint64, error) {
	if id == p.Self {
		if err := p.Ready(); err != nil {
			return 0, err
		}
		return p.Local.Forget(ctx, tombs)
	}
	c, err := p.client(id)
	if err != nil {
		return 0, err
	}
	r, err := c.Forget(ctx, &peerpb.ForgetRequest{Tombstones: tombstonesToWire(tombs)})
	return r.GetAge(), err
}

// Fence implements gc.Peers.
func (p *GCPeers) Fence(ctx context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error {
	if id == p.Self {
		if err := p.Ready(); err != nil {
			return err
		}
		return p.Local.Fence(ages)
	}
	c, err := p.client(id)
	if err != nil {
		return err
	}
	_, err = c.Fence(ctx, &peerpb.FenceRequest{Ages: agesToWire(ages)})
	return err
}

// Collect implements gc.Peers.
func (p *GCPeers) Collect(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) ([]bool, error) {
	if id == p.Self {
		if err := p.Ready(); err != nil {
			return nil, err
		}
		return p.Local.Collect(tombs)
	}
	c, err := p.client(id)
	if err != nil {
		return nil, err
	}
	r, err := c.Collect(ctx, &peerpb.CollectRequest{Tombstones: tombstonesToWire(tombs)})
	if err != nil {
		return nil, err
	}
	if len(r.GetDone()) != len(tombs) {
		return nil, fmt.Errorf("caspaxos/peerapi: node %d answered %d results for %d tombstones", id, len(r.GetDone()), len(tombs))
	}
	return r.GetDone(), nil
}
