package membership

import (
	"context"
	"fmt"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/gc"
)

// Deletion GC and membership change must not run at the same time: a GC
// round's "every proposer" and "every acceptor" must be fixed sets, and a
// joining acceptor must be given every age fence (PROTOCOL.md §8, §9).
//
// GuardGC wraps a GC runner's peers without changing the runner: the node
// lists come from the membership in use, and every call of a round is
// refused while a change is in progress on this node, or once the
// membership changed since the round's first call (its probe, Fence with
// no ages). A refused call fails the round, which the runner retries from
// step 1 later, with the new sets. A controller tells every node a change
// is in progress before it copies fences or changes a configuration, so no
// round that began before the change makes progress after it began.

// ErrGCPaused: a membership change is in progress, or happened during the
// GC round; the round is retried later.
var ErrGCPaused = fmt.Errorf("%w: deletion GC waits for a membership change", server.ErrUnreachable)

// GuardGC returns inner, gated by the node's membership state.
func (s *Keeper) GuardGC(inner gc.Peers) gc.Peers { return &guardedGC{s: s, inner: inner} }

type guardedGC struct {
	s     *Keeper
	inner gc.Peers

	mu    sync.Mutex
	epoch uint64 // the membership epoch of the round in progress
}

// admit checks that no change is in progress and, for a probe, starts a
// round at the current epoch; later calls must see the same epoch.
func (g *guardedGC) admit(probe bool) error {
	g.s.mu.Lock()
	changing, epoch := g.s.st.Changing, g.s.epoch
	g.s.mu.Unlock()
	if changing {
		return ErrGCPaused
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.epoch = epoch
		return nil
	}
	if g.epoch != epoch {
		return ErrGCPaused
	}
	return nil
}

func (g *guardedGC) Proposers() []protocol.NodeID { return g.s.Membership().IDs() }

func (g *guardedGC) Acceptors() []protocol.NodeID { return g.s.Membership().IDs() }

func (g *guardedGC) Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (uint64, error) {
	g.s.gcMu.RLock()
	defer g.s.gcMu.RUnlock()
	if err := g.admit(false); err != nil {
		return 0, err
	}
	return g.inner.Forget(ctx, id, tombs)
}

func (g *guardedGC) Fence(ctx context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error {
	g.s.gcMu.RLock()
	defer g.s.gcMu.RUnlock()
	if err := g.admit(ages == nil); err != nil {
		return err
	}
	return g.inner.Fence(ctx, id, ages)
}

func (g *guardedGC) Collect(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) ([]bool, error) {
	g.s.gcMu.RLock()
	defer g.s.gcMu.RUnlock()
	if err := g.admit(false); err != nil {
		return nil, err
	}
	return g.inner.Collect(ctx, id, tombs)
}
