package protocol

import (
	"errors"
	"fmt"
	"slices"
)

// Config is the acceptor configuration a proposer uses: whom it prepares
// with, whom it asks to accept, and how many answers make a quorum of each.
// The two sets are kept apart so that membership change (PROTOCOL.md §8) can
// grow one before the other; in a steady cluster they are equal.
//
// Version orders configurations: a proposer refuses to replace its
// configuration with one of a lower version.
type Config struct {
	Version       uint64
	PrepareSet    []NodeID
	PrepareQuorum int
	AcceptSet     []NodeID
	AcceptQuorum  int
}

// Majority returns the configuration of the given acceptors with majority
// quorums for both phases.
func Majority(version uint64, acceptors ...NodeID) Config {
	q := len(acceptors)/2 + 1
	return Config{
		Version:       version,
		PrepareSet:    slices.Clone(acceptors),
		PrepareQuorum: q,
		AcceptSet:     slices.Clone(acceptors),
		AcceptQuorum:  q,
	}
}

// Validate checks that every prepare quorum intersects every accept quorum,
// which is all CASPaxos' safety needs of quorums (PROTOCOL.md §1).
func (c Config) Validate() error {
	if err := validateSet("prepare", c.PrepareSet, c.PrepareQuorum); err != nil {
		return err
	}
	if err := validateSet("accept", c.AcceptSet, c.AcceptQuorum); err != nil {
		return err
	}
	if !QuorumsIntersect(c.PrepareSet, c.PrepareQuorum, c.AcceptSet, c.AcceptQuorum) {
		return fmt.Errorf("caspaxos/protocol: a prepare quorum of %d of %v and an accept quorum of %d of %v can be disjoint; raise the quorums so that every pair shares an acceptor (with equal sets: prepare + accept > %d)",
			c.PrepareQuorum, c.PrepareSet, c.AcceptQuorum, c.AcceptSet, len(c.AcceptSet))
	}
	return nil
}

func validateSet(phase string, set []NodeID, quorum int) error {
	if len(set) == 0 {
		return fmt.Errorf("caspaxos/protocol: the %s set is empty", phase)
	}
	seen := make(map[NodeID]bool, len(set))
	for _, id := range set {
		if id == 0 {
			return errors.New("caspaxos/protocol: node ID 0 is reserved")
		}
		if seen[id] {
			return fmt.Errorf("caspaxos/protocol: node %d appears twice in the %s set", id, phase)
		}
		seen[id] = true
	}
	if quorum < 1 || quorum > len(set) {
		return fmt.Errorf("caspaxos/protocol: %s quorum %d is outside 1..%d", phase, quorum, len(set))
	}
	return nil
}

// QuorumsIntersect reports whether every subset of p of size pq shares at
// least one member with every subset of a of size aq.
//
// The two quorums can be disjoint exactly when each can be filled from its own
// set while leaving the other enough room: a prepare quorum first takes the
// members only it has, an accept quorum likewise, and what each still needs
// must then fit in the shared members without overlap.
func QuorumsIntersect(p []NodeID, pq int, a []NodeID, aq int) bool {
	inA := make(map[NodeID]bool, len(a))
	for _, id := range a {
		inA[id] = true
	}
	shared := 0
	for _, id := range p {
		if inA[id] {
			shared++
		}
	}
	onlyP, onlyA := len(p)-shared, len(a)-shared
	needP := max(0, pq-onlyP)
	needA := max(0, aq-onlyA)
	return needP+needA > shared
}

// ReadQuorum is how many read replies must carry the same accepted ballot
// for the read fast path to answer (PROTOCOL.md §6): enough that the ballot
// was accepted by an accept quorum, and enough that the repliers intersect
// every accept quorum.
func (c Config) ReadQuorum() int {
	return max(c.AcceptQuorum, len(c.AcceptSet)-c.AcceptQuorum+1)
}

func (c Config) inAcceptSet(id NodeID) bool { return slices.Contains(c.AcceptSet, id) }

func (c Config) inPrepareSet(id NodeID) bool { return slices.Contains(c.PrepareSet, id) }

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	c.PrepareSet = slices.Clone(c.PrepareSet)
	c.AcceptSet = slices.Clone(c.AcceptSet)
	return c
}
