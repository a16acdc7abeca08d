package node

import (
	"context"

	"github.com/caspaxos/caspaxos/protocol"
)

// Deletion GC's operations on one node (PROTOCOL.md §9; see gc.go).

// ProposeGC runs step 1 for keys on this node's proposer (Proposer.ProposeGC).
func (n *Node) ProposeGC(ctx context.Context, keys []string) []protocol.Result {
	return n.proposer.ProposeGC(ctx, keys)
}

// Forget runs step 2 on this node's proposer (Proposer.Forget).
func (n *Node) Forget(ctx context.Context, tombs []protocol.Tombstone) (uint64, error) {
	return n.proposer.Forget(ctx, tombs)
}

// Fence runs step 3 on this node's acceptor (Acceptor.Fence).
func (n *Node) Fence(ages map[protocol.NodeID]uint64) error { return n.acceptor.Fence(ages) }

// CopyFences raises this node's acceptor's fences to ages copied from a
// member (Acceptor.CopyFences): a joining node's.
func (n *Node) CopyFences(ages map[protocol.NodeID]uint64) error { return n.acceptor.CopyFences(ages) }

// Collect runs step 4 on this node's acceptor (Acceptor.Collect).
func (n *Node) Collect(tombs []protocol.Tombstone) ([]bool, error) { return n.acceptor.Collect(tombs) }

// LocalGC is gc.Peers over a Local network: every node on it is a proposer
// and an acceptor, and a call reaches a node as a forward would (a cut
// link fails it with server.ErrUnreachable). from is the calling node.
type LocalGC struct {
	net  *Local
	from protocol.NodeID
	ids  []protocol.NodeID
}

// NewLocalGC returns node from's gc.Peers over l, for the nodes ids.
func NewLocalGC(l *Local, from protocol.NodeID, ids []protocol.NodeID) *LocalGC {
	return &LocalGC{net: l, from: from, ids: ids}
}

// Proposers implements gc.Peers.
func (g *LocalGC) Proposers() []protocol.NodeID { return g.ids }

// Acceptors implements gc.Peers.
func (g *LocalGC) Acceptors() []protocol.NodeID { return g.ids }

// Forget implements gc.Peers.
func (g *LocalGC) Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (uint64, error) {
	n, _, err := g.net.link(g.from, id)
	if err != nil {
		return 0, err
	}
	return n.Forget(ctx, tombs)
}

// Fence implements gc.Peers.
func (g *LocalGC) Fence(_ context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error {
	n, _, err := g.net.link(g.from, id)
	if err != nil {
		return err
	}
	return n.Fence(ages)
}

// Collect implements gc.Peers.
func (g *LocalGC) Collect(_ context.Context, id protocol.NodeID, tombs []protocol.Tombstone) ([]bool, error) {
	n, _, err := g.net.link(g.from, id)
	if err != nil {
		return nil, err
	}
	return n.Collect(tombs)
}
