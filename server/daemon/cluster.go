package daemon

import (
	"context"
	"errors"
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
	if err := d.guard.Err(); err != nil {
		return err
	}
	acceptors := d.members.Config()
	if acceptors.Version == 0 {
		return errors.New("not a member yet: add it with caspaxos members add")
	}
	count := func(set []protocol.NodeID) int {
		n := 0
		for _, id := range set {
			if d.reachable(id) {
				n++
			}
		}
		return n
	}
	p, a := count(acceptors.PrepareSet), count(acceptors.AcceptSet)
	if p < acceptors.PrepareQuorum || a < acceptors.AcceptQuorum {
		return fmt.Errorf("reaches %d of %d acceptors for prepare (quorum %d) and %d of %d for accept (quorum %d)",
			p, len(acceptors.PrepareSet), acceptors.PrepareQuorum, a, len(acceptors.AcceptSet), acceptors.AcceptQuorum)
	}
	return nil
}

// Members lists the members as this node sees them (clientapi.Backend),
// with their client addresses (clientAddrBook).
func (d *Daemon) Members(ctx context.Context) (clientapi.Membership, error) {
	m := d.membersWithout()
	d.fillClientAddrs(ctx, m.Members)
	return m, nil
}

// ownClientAddr is where clients reach this node: its client listener's
// address, with its peer address's host if the listener's is unspecified.
func (d *Daemon) ownClientAddr() string {
	return reachableAt(d.ClientAddr(), d.cfg.PeerAddr)
}

// membersWithout is Members without the other members' client addresses
// (it asks no peer: status reads it on every call).
func (d *Daemon) membersWithout() clientapi.Membership {
	st := d.members.State()
	out := clientapi.Membership{ConfigVersion: st.Membership.Version(), SelfID: uint64(d.id)}
	if ch := d.MemberChange(); ch != nil {
		out.Change = &clientapi.MemberChange{Op: ch.Op, Target: ch.Target.Name, Step: ch.Next, Steps: len(ch.Steps),
			CatchUpDone: ch.CatchUp.Done, CatchUpTotal: ch.CatchUp.Total, Error: ch.Error}
		if ch.Next < len(ch.Steps) {
			out.Change.Version = ch.Steps[ch.Next].Membership.Version()
		}
	}
	for _, m := range st.Membership.Nodes {
		id := m.ID
		mem := clientapi.Member{Name: m.Name, ID: uint64(id), PeerAddr: m.PeerAddr, Reachable: d.reachable(id)}
		if id == d.id {
			mem.ClientAddr = d.ownClientAddr()
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
	return out
}
