package membership

import (
	"context"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/node"
)

// Fences is what a node joining the cluster takes from the members before
// it is added (the CopyFences step of a plan):
//
//   - Ages, the deletion GC age fences of the members' acceptors (the
//     highest of each proposer's), so that a message fenced elsewhere
//     cannot land on the joining acceptor (PROTOCOL.md §9 step 3);
//   - Counter, a ballot counter at or above every member's proposer's, so
//     that the joining proposer never makes a ballot, nor a version, below
//     a register deletion GC removed: GC fast-forwarded every proposer of
//     its round past each removed tombstone's ballot and version (step 2),
//     and a proposer that joins later starts from its own counter 0; where
//     the register is gone nothing refuses its low ballot, and a key
//     re-created with it would go back to version 1 (PROTOCOL.md §7).
//     The chaos harness found that (seed 10018, a membership plan).
//
// Every member's proposer took part in every finished GC round, so any one
// member's counter covers every removed register; the controller still
// takes the highest of those that answer.
type Fences struct {
	Ages    map[protocol.NodeID]uint64
	Counter uint64
}

// merge raises f to g: the highest age of each proposer, the highest
// counter.
func (f *Fences) merge(g Fences) {
	if f.Ages == nil {
		f.Ages = map[protocol.NodeID]uint64{}
	}
	for id, a := range g.Ages {
		f.Ages[id] = max(f.Ages[id], a)
	}
	f.Counter = max(f.Counter, g.Counter)
}

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
