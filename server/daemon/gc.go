package daemon

import (
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/peerapi"
)

// Deletion GC on a networked node (PROTOCOL.md §9; the runner is
// server/gc). Each node runs a runner over its own persisted queue, fed
// by the deletes its proposer commits and by its sweeps. Steps 2 to 4 reach
// the other nodes through the GC service (transport/gc.proto) on their peer
// addresses, over the peer links' connections; the node lists and the gate
// against membership change come from the node's membership.Keeper (GuardGC): a
// round takes the members of the membership in use when it starts, and is
// refused, then retried with the new members, once a change begins.

// GCOptions tunes a node's deletion GC (see gc.Options).
type GCOptions = gc.Options

// deleted is the proposer's Deleted hook: it feeds the runner's queue.
// The runner exists before the node serves anything (startGC).
func (d *Daemon) deleted(key string, version uint64) {
	if gc := d.gc.Load(); gc != nil {
		gc.Enqueue(key, version)
	}
}

// startGC builds the node's runner (not started: Start does that once the
// node serves its peers).
func (d *Daemon) startGC() error {
	o := d.cfg.GC
	if o.Disabled {
		return nil
	}
	gcc := o.Config(d.id)
	gcc.Idempotency = d.cfg.Idempotency
	gc, err := gc.New(gcc, d.store, d.node, d.members.GuardGC(d.gcPeers()), d.log)
	if err != nil {
		return fmt.Errorf("caspaxos/daemon: deletion GC: %w", err)
	}
	d.gc.Store(gc)
	return nil
}

var errNotMember = errors.New("caspaxos/daemon: not a member yet: deletion GC waits")

// gcPeers is the runner's gc.Peers: this node directly, the others over
// their GC service on the peer links' connections. (GuardGC gives the
// runner the node lists.)
func (d *Daemon) gcPeers() *peerapi.GCPeers {
	return &peerapi.GCPeers{
		Self:    d.id,
		Local:   d.node,
		Members: func() []protocol.NodeID { return d.members.Membership().IDs() },
		// A joining node's runner has no cluster to collect in.
		Ready: func() error {
			if d.members.Membership().Version() == 0 {
				return errNotMember
			}
			return nil
		},
		Dial: d.tr.GC,
	}
}
