package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/peerapi"
	"github.com/caspaxos/caspaxos/storage"
)

// Membership change on a networked node (PROTOCOL.md §8; the steps are in
// server/membership). The node keeps its membership (MEMBERSHIP), its
// controller's change (MEMBERSHIP-CHANGE) and whether it has been a member
// (WAS-MEMBER) or was removed (REMOVED) in state files of its data
// directory, next to the store: storage.Dir reads and writes them, and the
// package documentation of storage draws the directory, every file in it
// and who writes it when. Once present, MEMBERSHIP wins over --cluster,
// which only bootstraps a cluster. A damaged state file is an error at
// start.
//
// WAS-MEMBER and REMOVED are membership.Record's, read and written by
// membership.Standing, which tells a removal from an add not done yet.
//
// A node's ID is part of every ballot it makes, and a ballot must never be
// used twice (PROTOCOL.md §2). The proposer persists its ballot ceiling in
// its data directory, so a node that lost its disk and came back under the
// same ID would start counting again at 0 and could reuse a ballot of its
// former life with another value, and its acceptor would have forgotten
// what it promised and accepted. So a node started with --join takes an
// ID of its name and a fresh incarnation of its data directory: a new disk
// is a new node. Nodes of the bootstrap cluster keep the ID of their name,
// and never serve on a directory the cluster does not know them by
// (server/identity).

// loadState returns the persisted state, or the bootstrap cluster's, or
// (joining) none.
func loadState(cfg Config, dir *storage.Dir, acceptors protocol.Config) (membership.NodeState, error) {
	b, err := dir.ReadState(storage.MembershipFile)
	if err != nil || b != nil {
		var st membership.NodeState
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			return st, fmt.Errorf("caspaxos/daemon: %s: %w", storage.MembershipFile, err)
		}
		return st, nil
	}
	if cfg.Join {
		return membership.NodeState{}, nil
	}
	m := membership.Membership{Config: acceptors}
	for _, c := range cfg.Cluster {
		m.Nodes = append(m.Nodes, membership.Member{Name: c.Name, ID: NodeID(c.Name), PeerAddr: c.PeerAddr})
	}
	slices.SortFunc(m.Nodes, func(a, b membership.Member) int { return cmp.Compare(a.ID, b.ID) })
	return membership.NodeState{Membership: m}, nil
}

func (d *Daemon) saveState(st membership.NodeState) error {
	// A membership that lists this node is recorded as such before it is
	// used: a removal that follows at once is then still told from an add
	// that has not reached the node yet (see Removed).
	if _, listed := st.Membership.Node(d.id); listed {
		if err := d.record.MarkMember(); err != nil {
			return err
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return d.dir.WriteState(storage.MembershipFile, b)
}

// changeStore is the controller's membership.ChangeStore in the data directory.
type changeStore struct{ dir *storage.Dir }

func (c changeStore) LoadChange() (*membership.Change, error) {
	b, err := c.dir.ReadState(storage.MembershipChangeFile)
	if err != nil || b == nil {
		return nil, err
	}
	var ch membership.Change
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, fmt.Errorf("caspaxos/daemon: %s: %w", storage.MembershipChangeFile, err)
	}
	return &ch, nil
}

func (c changeStore) SaveChange(ch *membership.Change) error {
	if ch == nil {
		return c.dir.RemoveState(storage.MembershipChangeFile)
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	return c.dir.WriteState(storage.MembershipChangeFile, b)
}

// adminNode is what this node's Admin service asks of it (peerapi.Admin).
type adminNode struct{ d *Daemon }

var _ peerapi.Admin = adminNode{}

// Info implements peerapi.Admin.
func (a adminNode) Info(_ context.Context, caller protocol.NodeID, callerIncarnation string) (membership.PeerInfo, error) {
	st := a.d.members.State()
	out := membership.PeerInfo{Name: a.d.cfg.Name, ID: a.d.id, Version: st.Membership.Version(), Changing: st.Changing,
		Incarnation: a.d.guard.Incarnation(), ClientAddr: a.d.ownClientAddr()}
	if caller != 0 {
		listed := slices.ContainsFunc(st.Membership.Nodes, func(n membership.Member) bool { return n.ID == caller })
		out.CallerListed = &listed
		if listed && caller != a.d.id {
			// Recorded before the answer that may let the caller seal
			// (server/identity, step 1).
			inc, err := a.d.guard.Learn(caller, callerIncarnation)
			if err != nil {
				return membership.PeerInfo{}, err
			}
			out.CallerIncarnation = inc
		}
	}
	out.Controls, out.ChangeID = a.d.ctl.Stored()
	return out, nil
}

// checkServing refuses, as unavailable, what a node that has not
// confirmed its data directory's identity must not do (server/identity): take
// a membership (a newer one would let it seal against members that never
// knew its incarnation: those added after the bootstrap), or list its
// keys for a catch-up (an emptied store's empty list would count among
// the old acceptors').
func (d *Daemon) checkServing() error {
	if err := d.guard.Err(); err != nil {
		return peerapi.Unavailable(err)
	}
	return nil
}

// SetState implements peerapi.Admin.
func (a adminNode) SetState(ctx context.Context, st membership.NodeState) error {
	if err := a.d.checkServing(); err != nil {
		return err
	}
	return a.d.members.Set(ctx, st)
}

// Settled implements peerapi.Admin.
func (a adminNode) Settled(ctx context.Context, version uint64) (bool, error) {
	return a.d.members.Settled(ctx, version)
}

// Fences implements peerapi.Admin.
func (a adminNode) Fences() (membership.Fences, error) { return membership.ReadFences(a.d.store) }

// CopyFences implements peerapi.Admin.
func (a adminNode) CopyFences(ctx context.Context, f membership.Fences) error {
	return membership.TakeFences(ctx, a.d.node, f)
}

// ScanKeys implements peerapi.Admin.
func (a adminNode) ScanKeys(start string, limit int) ([]string, error) {
	if err := a.d.checkServing(); err != nil {
		return nil, err
	}
	return membership.ScanKeys(a.d.store, start, limit)
}

// ReleaseHold implements peerapi.Admin: membership.Standing.ReleaseHold.
func (a adminNode) ReleaseHold(ctx context.Context, force bool) (membership.Hold, error) {
	return a.d.standing.ReleaseHold(ctx, force)
}

// AddMember adds the node serving the peer address addr under name, and
// returns once the change is done (or ctx ends: it then goes on). Over
// TLS, the node at addr must present a certificate naming name, the name
// the operator gave: its own word for its name and ID is taken only then.
func (d *Daemon) AddMember(ctx context.Context, name, addr string) error {
	ictx, cancel := context.WithTimeout(ctx, d.cfg.Timers.JoinerInfoTimeout)
	info, err := d.admin.Info(ictx, membership.Member{Name: name, PeerAddr: addr}, 0, "")
	cancel()
	if err != nil {
		return fmt.Errorf("caspaxos/daemon: asking the node at %s for its ID: %w", addr, err)
	}
	if info.Name != name {
		return fmt.Errorf("caspaxos/daemon: the node at %s is called %q, not %q", addr, info.Name, name)
	}
	done, err := d.ctl.Add(membership.Member{Name: name, ID: info.ID, PeerAddr: addr})
	if err != nil {
		return err
	}
	return d.waitChange(ctx, done)
}

// RemoveMember removes the member called name; see AddMember.
func (d *Daemon) RemoveMember(ctx context.Context, name string) error {
	done, err := d.ctl.Remove(name)
	if err != nil {
		return err
	}
	return d.waitChange(ctx, done)
}

func (d *Daemon) waitChange(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		_, err := d.ctl.Status()
		return err
	case <-ctx.Done():
		return fmt.Errorf("caspaxos/daemon: the membership change goes on: %w", ctx.Err())
	}
}

// MemberChange returns the change this node's controller runs, nil if none.
func (d *Daemon) MemberChange() *membership.Change {
	ch, _ := d.ctl.Status()
	return ch
}
