package membership

import (
	"errors"
	"fmt"
	"slices"

	"github.com/caspaxos/caspaxos/protocol"
)

// Membership change (PROTOCOL.md §8).
//
// A Membership is what every node uses: the acceptor configuration of its
// proposer (versioned) and the address of every node in it. A change adds
// or removes one node through a short plan of Steps, each a Membership of
// a higher version, that the Controller (membership_controller.go) applies
// to every node in turn. F is the number of tolerated failures:
//
//   - add X to 2F+1 nodes: copy the GC age fences to X; accept set += X with
//     accept quorum F+2 (prepare set unchanged, quorum F+1); catch up every
//     key; then prepare set += X with prepare quorum F+2.
//   - add X to 2F+2 nodes: copy the fences; X in both sets, quorums F+2.
//   - remove X from 2F+3 nodes: both sets -= X, quorums F+2; catch up every
//     key (an even configuration is only ever reached through a catch-up,
//     which the next even-to-odd add relies on).
//   - remove X from 2F+2 nodes: prepare set -= X (quorum F+1); then accept
//     set -= X (quorum F+1). Every key accepted by F+2 of 2F+2 is on a
//     majority of the rest: no catch-up.
//
// Every step's configuration is checked by protocol.Config.Validate (each
// prepare quorum meets each accept quorum), and so is each step against the
// one before it (an attempt that began before a step may finish with the
// older configuration: see Settled).

// Member is a node of the cluster: its name, its ID (ballots, routing) and
// the address of its peer transport.
type Member struct {
	Name     string          `json:"name"`
	ID       protocol.NodeID `json:"id"`
	PeerAddr string          `json:"peer_addr"`
}

// Membership is the cluster configuration one node uses.
type Membership struct {
	// Config is the proposer's acceptor configuration; Config.Version
	// orders memberships.
	Config protocol.Config `json:"config"`
	// Nodes lists every node of Config's prepare and accept sets, with its
	// name and address, sorted by ID.
	Nodes []Member `json:"nodes"`
}

// Version is the membership's configuration version.
func (m Membership) Version() uint64 { return m.Config.Version }

// IDs returns the nodes of the prepare and accept sets, sorted: the nodes
// of home routing, and those a node keeps peer links to.
func (m Membership) IDs() []protocol.NodeID {
	ids := append(slices.Clone(m.Config.PrepareSet), m.Config.AcceptSet...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Node returns the member with ID id.
func (m Membership) Node(id protocol.NodeID) (Member, bool) {
	for _, n := range m.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return Member{}, false
}

// ByName returns the member called name.
func (m Membership) ByName(name string) (Member, bool) {
	for _, n := range m.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Member{}, false
}

// Validate checks the configuration and that Nodes names exactly the nodes
// of its sets, each once, with a name and an address.
func (m Membership) Validate() error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	ids := m.IDs()
	if len(m.Nodes) != len(ids) {
		return fmt.Errorf("caspaxos/membership: membership lists %d nodes for the %d of its configuration", len(m.Nodes), len(ids))
	}
	names := make(map[string]bool, len(m.Nodes))
	for _, n := range m.Nodes {
		if _, ok := slices.BinarySearch(ids, n.ID); !ok || n.Name == "" || n.PeerAddr == "" || names[n.Name] {
			return fmt.Errorf("caspaxos/membership: membership node %q (%d) at %q: not in the configuration, unnamed, without address or named twice", n.Name, n.ID, n.PeerAddr)
		}
		names[n.Name] = true
	}
	return nil
}

// Clone returns a deep copy of m.
func (m Membership) Clone() Membership {
	return Membership{Config: m.Config.Clone(), Nodes: slices.Clone(m.Nodes)}
}

// steady reports whether m is a configuration a change may start from: the
// same acceptors in both sets with majority quorums.
func (m Membership) steady() bool {
	c := m.Config
	p, a := slices.Clone(c.PrepareSet), slices.Clone(c.AcceptSet)
	slices.Sort(p)
	slices.Sort(a)
	q := len(a)/2 + 1
	return slices.Equal(p, a) && c.PrepareQuorum == q && c.AcceptQuorum == q
}

// Step is one configuration of a change's plan.
type Step struct {
	// Membership is what every node takes in this step.
	Membership Membership `json:"membership"`
	// CopyFences: before the step, the deletion GC age fences of the
	// current acceptors are copied to the joining one, so that a message
	// fenced elsewhere cannot land on it.
	CopyFences bool `json:"copy_fences,omitempty"`
	// CatchUp: once every proposer has settled on the step, every key is
	// rewritten through it (proposer.Proposer.Rewrite).
	CatchUp bool `json:"catch_up,omitempty"`
}

// ErrNotSteady: a change can start only from a configuration with equal
// sets and majority quorums (a finished change leaves one).
var ErrNotSteady = errors.New("caspaxos/membership: membership change needs equal prepare and accept sets with majority quorums")

// PlanAdd returns the steps that add x to cur.
func PlanAdd(cur Membership, x Member) ([]Step, error) {
	if !cur.steady() {
		return nil, ErrNotSteady
	}
	if x.ID == 0 || x.Name == "" || x.PeerAddr == "" {
		return nil, fmt.Errorf("caspaxos/membership: adding %q (%d) at %q: a member needs a name, an ID and an address", x.Name, x.ID, x.PeerAddr)
	}
	for _, n := range cur.Nodes {
		if n.ID == x.ID || n.Name == x.Name {
			return nil, fmt.Errorf("caspaxos/membership: %q (%d) is already a member", x.Name, x.ID)
		}
	}
	old := slices.Clone(cur.Config.AcceptSet)
	grown := append(slices.Clone(old), x.ID)
	slices.Sort(grown)
	nodes := append(slices.Clone(cur.Nodes), x)
	sortMembers(nodes)
	v := cur.Version()
	n := len(old)
	if n%2 == 1 { // 2F+1 -> 2F+2
		f := (n - 1) / 2
		first := protocol.Config{Version: v + 1, PrepareSet: old, PrepareQuorum: f + 1, AcceptSet: grown, AcceptQuorum: f + 2}
		second := protocol.Config{Version: v + 2, PrepareSet: grown, PrepareQuorum: f + 2, AcceptSet: grown, AcceptQuorum: f + 2}
		return checkPlan(cur, []Step{
			{Membership: Membership{Config: first, Nodes: nodes}, CopyFences: true, CatchUp: true},
			{Membership: Membership{Config: second, Nodes: slices.Clone(nodes)}},
		})
	}
	f := (n - 2) / 2 // 2F+2 -> 2F+3
	c := protocol.Config{Version: v + 1, PrepareSet: grown, PrepareQuorum: f + 2, AcceptSet: slices.Clone(grown), AcceptQuorum: f + 2}
	return checkPlan(cur, []Step{{Membership: Membership{Config: c, Nodes: nodes}, CopyFences: true}})
}

// PlanRemove returns the steps that remove the member called name from cur.
func PlanRemove(cur Membership, name string) ([]Step, error) {
	if !cur.steady() {
		return nil, ErrNotSteady
	}
	x, ok := cur.ByName(name)
	if !ok {
		return nil, fmt.Errorf("caspaxos/membership: %q is not a member", name)
	}
	old := slices.Clone(cur.Config.AcceptSet)
	n := len(old)
	if n < 2 {
		return nil, errors.New("caspaxos/membership: the last member cannot be removed")
	}
	rest := slices.DeleteFunc(slices.Clone(old), func(id protocol.NodeID) bool { return id == x.ID })
	nodes := slices.DeleteFunc(slices.Clone(cur.Nodes), func(m Member) bool { return m.ID == x.ID })
	v := cur.Version()
	if n%2 == 1 { // 2F+3 -> 2F+2
		f := (n - 3) / 2
		c := protocol.Config{Version: v + 1, PrepareSet: rest, PrepareQuorum: f + 2, AcceptSet: slices.Clone(rest), AcceptQuorum: f + 2}
		return checkPlan(cur, []Step{{Membership: Membership{Config: c, Nodes: nodes}, CatchUp: true}})
	}
	f := (n - 2) / 2 // 2F+2 -> 2F+1
	first := protocol.Config{Version: v + 1, PrepareSet: rest, PrepareQuorum: f + 1, AcceptSet: old, AcceptQuorum: f + 2}
	second := protocol.Config{Version: v + 2, PrepareSet: slices.Clone(rest), PrepareQuorum: f + 1, AcceptSet: slices.Clone(rest), AcceptQuorum: f + 1}
	return checkPlan(cur, []Step{
		{Membership: Membership{Config: first, Nodes: slices.Clone(cur.Nodes)}},
		{Membership: Membership{Config: second, Nodes: nodes}},
	})
}

// checkPlan validates every step, and that each step's prepare quorums meet
// the accept quorums of the step before (an attempt that began before the
// step may still be accepting with the older configuration while one that
// began after prepares with the newer: the controller waits for Settled
// before the next step, so only neighbours overlap).
func checkPlan(cur Membership, steps []Step) ([]Step, error) {
	prev := cur.Config
	for _, s := range steps {
		if err := s.Membership.Validate(); err != nil {
			return nil, fmt.Errorf("caspaxos/membership: planned configuration %d: %w", s.Membership.Version(), err)
		}
		c := s.Membership.Config
		if !protocol.QuorumsIntersect(c.PrepareSet, c.PrepareQuorum, prev.AcceptSet, prev.AcceptQuorum) ||
			!protocol.QuorumsIntersect(prev.PrepareSet, prev.PrepareQuorum, c.AcceptSet, c.AcceptQuorum) {
			return nil, fmt.Errorf("caspaxos/membership: planned configuration %d does not overlap the one before", c.Version)
		}
		prev = c
	}
	return steps, nil
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
