package membership

import (
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

// Step is one configuration of a change's plan.
type Step struct {
	// Membership is what every node takes in this step.
	Membership Membership `json:"membership"`
	// CopyFences: before the step, the deletion GC age fences of the
	// current acceptors are copied to the joining one, so that a message
	// fenced elsewhere cannot land on it, and its proposer moves past the
	// members' ballot counters (Fences).
	CopyFences bool `json:"copy_fences,omitempty"`
	// CatchUp: once every proposer has settled on the step, every key is
	// rewritten through it (proposer.Proposer.Rewrite).
	CatchUp bool `json:"catch_up,omitempty"`
}

// ErrNotSteady: a change can start only from a configuration with equal
// sets and majority quorums (a finished change leaves one).
var ErrNotSteady = protocol.ErrNotSteady

// PlanAdd returns the steps that add x to cur: protocol.PlanAdd's plan of
// configurations, each with the members it names.
func PlanAdd(cur Membership, x Member) ([]Step, error) {
	if !cur.Config.Steady() {
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
	plan, err := protocol.PlanAdd(cur.Config, x.ID)
	if err != nil {
		return nil, err
	}
	return withMembers(plan, append(slices.Clone(cur.Nodes), x))
}

// PlanRemove returns the steps that remove the member called name from
// cur: protocol.PlanRemove's plan of configurations, each with the members
// it names.
func PlanRemove(cur Membership, name string) ([]Step, error) {
	if !cur.Config.Steady() {
		return nil, ErrNotSteady
	}
	x, ok := cur.ByName(name)
	if !ok {
		return nil, fmt.Errorf("caspaxos/membership: %q is not a member", name)
	}
	plan, err := protocol.PlanRemove(cur.Config, x.ID)
	if err != nil {
		return nil, err
	}
	return withMembers(plan, cur.Nodes)
}

// withMembers gives each step of plan the members of known its
// configuration names, sorted by ID, and checks that each step is a valid
// Membership (every node named, addressed, once).
func withMembers(plan []protocol.PlanStep, known []Member) ([]Step, error) {
	steps := make([]Step, 0, len(plan))
	for _, p := range plan {
		m := Membership{Config: p.Config}
		for _, id := range m.IDs() {
			if n, ok := (Membership{Nodes: known}).Node(id); ok {
				m.Nodes = append(m.Nodes, n)
			}
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("caspaxos/membership: planned configuration %d: %w", m.Version(), err)
		}
		steps = append(steps, Step{Membership: m, CopyFences: p.CopyFences, CatchUp: p.CatchUp})
	}
	return steps, nil
}
