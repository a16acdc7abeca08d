package chaos

import (
	"context"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
)

// gcConfig is every node's deletion GC runner: short delays, so that keys
// deleted during a run are collected during it.
func gcConfig(id protocol.NodeID) gc.Config {
	cfg := gc.DefaultConfig()
	cfg.ID = id
	cfg.RoundTimeout = 500 * time.Millisecond
	cfg.RetryBase, cfg.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	cfg.Delay = 5 * time.Millisecond
	cfg.OrphanDelay = 100 * time.Millisecond
	cfg.SweepInterval = 200 * time.Millisecond
	cfg.RandSeed = uint64(id)
	return cfg
}

// gcPeers is a node's gc.Peers over the faulty network: a call reaches a
// node as a forward does (a cut link or a node down fails it with
// server.ErrUnreachable). Every collection is an operation of its keys'
// histories (sim.HistoryOp.GC), from before the call to after it.
//
// The runner reaches it through its Keeper's GuardGC, which lists the
// nodes of the membership in use and refuses every call while a
// membership change holds the node.
type gcPeers struct {
	inc *incarnation
	h   *history
}

var _ gc.Peers = (*gcPeers)(nil)

func (g *gcPeers) Proposers() []protocol.NodeID { return g.inc.keeper.Membership().IDs() }
func (g *gcPeers) Acceptors() []protocol.NodeID { return g.inc.keeper.Membership().IDs() }

func (g *gcPeers) route(to protocol.NodeID) (*incarnation, error) {
	return g.inc.net.call(g.inc, to)
}

func (g *gcPeers) Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (uint64, error) {
	dst, err := g.route(id)
	if err != nil {
		return 0, err
	}
	return dst.node.Forget(ctx, tombs)
}

func (g *gcPeers) Fence(_ context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error {
	dst, err := g.route(id)
	if err != nil {
		return err
	}
	return dst.node.Fence(ages)
}

func (g *gcPeers) Collect(_ context.Context, id protocol.NodeID, tombs []protocol.Tombstone) ([]bool, error) {
	dst, err := g.route(id)
	if err != nil {
		return nil, err
	}
	for _, t := range tombs {
		g.inc.net.inv.collect(id, t.Key) // before any removal: invariants 2 and 3 skip the key
	}
	call := g.h.now()
	done, err := dst.node.Collect(tombs)
	ret := g.h.now()
	for i, t := range tombs {
		if err == nil && !done[i] {
			continue // still held something else: nothing removed
		}
		g.h.add(sim.HistoryOp{Client: -1 - int(g.inc.id), Op: kv.Op{Key: t.Key}, GC: true, Call: call, Return: ret})
	}
	g.h.gcs.Add(1)
	return done, err
}
