package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/node"
)

// Errors of Keeper.Set; match with errors.Is.
var (
	// ErrMembershipHeld: another controller's change is in progress on
	// this node.
	ErrMembershipHeld = errors.New("caspaxos/membership: another membership change holds this node")
	// ErrMembershipOlder: the node already uses a newer membership.
	ErrMembershipOlder = errors.New("caspaxos/membership: membership is older than the one in use")
	// ErrMembershipConflict: the node uses another membership of the same version.
	ErrMembershipConflict = errors.New("caspaxos/membership: another membership of the same version is in use")
)

// Links is the part of a network transport membership change drives:
// it replaces the set of peers (ID to peer address; this node excluded)
// and the names of the membership's nodes (ID to name; this node
// included), which their peer certificates must carry. names is empty
// while the node is no member yet (a joining node knows nobody).
type Links interface {
	SetPeers(peers, names map[protocol.NodeID]string)
}

// Keeper holds a node's NodeState and applies a new one to the node:
// its proposer's configuration, its peer links and its home routing.
type Keeper struct {
	self    protocol.NodeID
	node    *node.Node
	links   Links
	persist func(NodeState) error

	// gcMu is held shared by every GC call of GuardGC for its duration, and
	// exclusively by Set: a change begins only once the GC calls in flight
	// here have ended. Taken before mu.
	gcMu  sync.RWMutex
	mu    sync.Mutex
	st    NodeState
	epoch uint64 // raised whenever the membership or Changing changes (membership_gc.go)
	// applied is the version of the membership the proposer, the peer
	// links and home routing took; below st's when a Set persisted st but
	// ended (its ctx) before the proposer took it: a retried Set gives it.
	applied uint64
	// holder is the controller of the change holding the node, as the last
	// membership listing it gave it: a controller that removes itself is
	// no longer listed by the membership it holds the node with, but it
	// can still be asked about its change (HoldController).
	holder Member
}

// NewKeeper returns the state st of node, which must already use st's
// configuration (the node was built with it). persist makes a state durable;
// links may be nil (in-process nodes).
func NewKeeper(node *node.Node, st NodeState, links Links, persist func(NodeState) error) *Keeper {
	st.Membership = st.Membership.Clone() // Config shares its slices: they must be ours
	s := &Keeper{self: node.ID(), node: node, links: links, persist: persist, st: st, applied: st.Membership.Version()}
	s.noteHolder()
	s.applyLinks(st.Membership)
	return s
}

// State returns the node's state.
func (s *Keeper) State() NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return NodeState{Membership: s.st.Membership.Clone(), Changing: s.st.Changing, Controller: s.st.Controller, ChangeID: s.st.ChangeID}
}

// Membership returns the membership the node uses.
func (s *Keeper) Membership() Membership { return s.State().Membership }

// Config returns the configuration the node uses, without copying it (it is
// read on every request): its slices are shared, to be read and never
// changed. A new membership replaces them; it never changes them in place.
func (s *Keeper) Config() protocol.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Membership.Config
}

// Set makes the node take st, durably before it is used: an equal
// membership only updates whether a change is in progress; a newer one is
// persisted, then given to the proposer (SetConfig), the peer links and
// home routing. It refuses an older membership (ErrMembershipOlder),
// another of the same version (ErrMembershipConflict), and any state from
// a controller other than the one whose change is in progress
// (ErrMembershipHeld). A Set that failed after persisting (its ctx ended
// before the proposer took the configuration) is completed by a retry with
// the same state: the controller's Settled waits for the proposer.
func (s *Keeper) Set(ctx context.Context, st NodeState) error {
	if err := st.Membership.Validate(); err != nil {
		return err
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		// The caller gave up while this waited for the locks (behind GC
		// calls): a controller may have gone on since, and a late state
		// (a release) must not undo what it did after.
		return err
	}
	cur := s.st
	if cur.Changing && cur.Controller != st.Controller {
		return fmt.Errorf("%w: %s's", ErrMembershipHeld, cur.Controller)
	}
	if cur.Changing && !st.Changing && cur.ChangeID != "" && st.ChangeID != "" && cur.ChangeID != st.ChangeID {
		// The end (or release) of an earlier change of the same
		// controller, arriving late: the node is held by its next one.
		return fmt.Errorf("%w: %s's change %s, not %s", ErrMembershipHeld, cur.Controller, cur.ChangeID, st.ChangeID)
	}
	if !st.Changing {
		st.ChangeID = "" // a hold's name; no hold, no name
	}
	v, cv := st.Membership.Version(), cur.Membership.Version()
	switch {
	case v < cv:
		return fmt.Errorf("%w: %d < %d", ErrMembershipOlder, v, cv)
	case v == cv && !sameMembership(st.Membership, cur.Membership):
		return fmt.Errorf("%w: version %d", ErrMembershipConflict, v)
	}
	if v != cv || st.Changing != cur.Changing || st.Controller != cur.Controller || st.ChangeID != cur.ChangeID {
		st.Membership = st.Membership.Clone()
		if err := s.persist(st); err != nil {
			return fmt.Errorf("caspaxos/membership: persisting membership: %w", err)
		}
		s.st = st
		s.epoch++
		s.noteHolder()
	}
	if s.applied >= v {
		return nil
	}
	if err := s.node.Proposer().SetConfig(ctx, s.st.Membership.Config); err != nil {
		// Persisted: a restart uses it, and so does a retried Set. The
		// driver stopped, ctx ended, or the proposer already has it.
		cfg, cerr := s.node.Proposer().Config(ctx)
		if cerr != nil || cfg.Version < v {
			return errors.Join(err, cerr)
		}
	}
	s.applyLinks(s.st.Membership)
	s.node.SetMembers(s.st.Membership.IDs())
	s.applied = v
	return nil
}

// ReleaseStale ends the hold held describes (Changing, its controller, its
// change and membership version) if it is still the node's state, and
// reports whether it did. It is for a hold whose change is over: its
// controller no longer stores it (a change abandoned by a controller of an
// earlier release, which freed nothing, or one whose release could not
// reach this node). A new change of the same controller that held the node
// in the meantime changed its state, so it is left alone.
func (s *Keeper) ReleaseStale(held NodeState) (bool, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.st
	if !held.Changing || !cur.Changing || cur.Controller != held.Controller || cur.ChangeID != held.ChangeID ||
		cur.Membership.Version() != held.Membership.Version() {
		return false, nil
	}
	next := NodeState{Membership: cur.Membership, Controller: cur.Controller}
	if err := s.persist(next); err != nil {
		return false, fmt.Errorf("caspaxos/membership: persisting membership: %w", err)
	}
	s.st = next
	s.epoch++
	s.noteHolder()
	return true, nil
}

// noteHolder remembers the holding controller's address while the
// membership lists it. Under mu.
func (s *Keeper) noteHolder() {
	if !s.st.Changing {
		s.holder = Member{}
		return
	}
	if c, ok := s.st.Membership.ByName(s.st.Controller); ok {
		s.holder = c
	}
}

// HoldController returns the controller of the change that holds the node
// in held (a state State returned): as held's membership lists it, or, if
// it does not (the controller removes itself), as an earlier membership
// of this run listed it. ok is false when the node is not held or the
// controller's address is unknown (it was never listed since this node
// started): nobody to ask.
func (s *Keeper) HoldController(held NodeState) (Member, bool) {
	if !held.Changing {
		return Member{}, false
	}
	if c, ok := held.Membership.ByName(held.Controller); ok {
		return c, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holder.Name == held.Controller && s.holder.Name != "" {
		return s.holder, true
	}
	return Member{}, false
}

func (s *Keeper) applyLinks(m Membership) {
	if s.links == nil {
		return
	}
	peers := make(map[protocol.NodeID]string, len(m.Nodes))
	names := make(map[protocol.NodeID]string, len(m.Nodes))
	for _, n := range m.Nodes {
		if m.Version() > 0 {
			names[n.ID] = n.Name
		}
		if n.ID != s.self {
			peers[n.ID] = n.PeerAddr
		}
	}
	s.links.SetPeers(peers, names)
}

// sameMembership reports whether a and b are the same configuration and nodes.
func sameMembership(a, b Membership) bool {
	ca, cb := a.Config, b.Config
	return ca.Version == cb.Version && ca.PrepareQuorum == cb.PrepareQuorum && ca.AcceptQuorum == cb.AcceptQuorum &&
		slices.Equal(ca.PrepareSet, cb.PrepareSet) && slices.Equal(ca.AcceptSet, cb.AcceptSet) && slices.Equal(a.Nodes, b.Nodes)
}

// Settled reports whether the node's proposer settled on version.
func (s *Keeper) Settled(ctx context.Context, version uint64) (bool, error) {
	return s.node.Proposer().Settled(ctx, version)
}

// JoiningConfig is the configuration of a node that waits to be added: its
// own acceptor and one that does not exist, with quorums of both, so that
// nothing it proposes can be chosen before the cluster gives it a
// configuration (version 0: any real one is newer).
func JoiningConfig(self protocol.NodeID) protocol.Config {
	nobody := protocol.NodeID(1 << 63) // no node ID has the top bit (daemon.NodeID)
	return protocol.Config{Version: 0, PrepareSet: []protocol.NodeID{self, nobody}, PrepareQuorum: 2,
		AcceptSet: []protocol.NodeID{self, nobody}, AcceptQuorum: 2}
}

// ScanKeys returns up to limit keys of store at or after start, in order
// (the catch-up's key stream, Peers.ScanKeys).
func ScanKeys(store interface {
	Scan(start string, fn func(string, protocol.Register) bool) error
}, start string, limit int) ([]string, error) {
	var keys []string
	err := store.Scan(start, func(key string, _ protocol.Register) bool {
		if len(keys) == limit {
			return false
		}
		keys = append(keys, key)
		return true
	})
	return keys, err
}
