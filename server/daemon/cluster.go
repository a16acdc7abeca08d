package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
)

// reachable reports whether this node can reach acceptor id now.
func (d *Daemon) reachable(id protocol.NodeID) bool {
	return id == d.id || d.tr.Reachable(id)
}

// Health returns nil when this node reaches a prepare quorum and an accept
// quorum of acceptors (clientapi.Backend).
func (d *Daemon) Health(context.Context) error {
	count := func(set []protocol.NodeID) int {
		n := 0
		for _, id := range set {
			if d.reachable(id) {
				n++
			}
		}
		return n
	}
	p, a := count(d.acceptors.PrepareSet), count(d.acceptors.AcceptSet)
	if p < d.acceptors.PrepareQuorum || a < d.acceptors.AcceptQuorum {
		return fmt.Errorf("reaches %d of %d acceptors for prepare (quorum %d) and %d of %d for accept (quorum %d)",
			p, len(d.acceptors.PrepareSet), d.acceptors.PrepareQuorum, a, len(d.acceptors.AcceptSet), d.acceptors.AcceptQuorum)
	}
	return nil
}

// Members lists the members as this node sees them (clientapi.Backend).
func (d *Daemon) Members(context.Context) (clientapi.Membership, error) {
	out := clientapi.Membership{ConfigVersion: d.acceptors.Version}
	for _, m := range d.cfg.Cluster {
		id := NodeID(m.Name)
		mem := clientapi.Member{Name: m.Name, ID: uint64(id), PeerAddr: m.PeerAddr, Reachable: d.reachable(id)}
		if m.Name == d.cfg.Name {
			mem.ClientAddr = d.cfg.ClientAddr
		}
		out.Members = append(out.Members, mem)
	}
	slices.SortFunc(out.Members, func(a, b clientapi.Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}
