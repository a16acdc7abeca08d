package membership

import (
	"context"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/node"
)

// Fences is what a node joining the cluster takes from the members before
// it is added: their acceptors' GC age fences and a ballot counter at or
// above their proposers'. The rule, and why the counter, is the core's
// (protocol.JoinFences); the controller merges the members' answers with
// protocol.MergeJoinFences.
type Fences = protocol.JoinFences

// FenceStore is what ReadFences reads of a member's store: its acceptor's
// persisted fences and its proposer's persisted ballot ceiling (at or above
// every counter the proposer used).
type FenceStore interface {
	Fences() (map[protocol.NodeID]uint64, error)
	Ceiling() (uint64, error)
}

// ReadFences returns what a joining node must take from the member whose
// store st is.
func ReadFences(st FenceStore) (Fences, error) {
	ages, err := st.Fences()
	if err != nil {
		return Fences{}, err
	}
	c, err := st.Ceiling()
	if err != nil {
		return Fences{}, err
	}
	return Fences{Ages: ages, Counter: c}, nil
}

// TakeFences makes n take f: its acceptor raises its fences to f.Ages and
// its proposer moves its counter to f.Counter, both persisted before it
// returns.
func TakeFences(ctx context.Context, n *node.Node, f Fences) error {
	if err := n.CopyFences(f.Ages); err != nil {
		return err
	}
	if f.Counter == 0 {
		return nil
	}
	return n.Proposer().FastForward(ctx, f.Counter)
}
