package protocol

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Membership change (PROTOCOL.md §8) as a plan: the configurations that
// take a steady configuration to one with an acceptor more or less, in
// order, each with the work that goes with it. Carrying a plan out
// (copying fences, having every proposer take each configuration and
// settle on it, rewriting every key) is the caller's. F is the number of
// tolerated failures:
//
//   - add X to 2F+1 acceptors: copy the GC age fences to X; accept set += X
//     with accept quorum F+2 (prepare set unchanged, quorum F+1); catch up
//     every key; then prepare set += X with prepare quorum F+2.
//   - add X to 2F+2 acceptors: copy the fences; X in both sets, quorums F+2.
//   - remove X from 2F+3 acceptors: both sets -= X, quorums F+2; catch up
//     every key (an even configuration is only ever reached through a
//     catch-up, which the next even-to-odd add relies on).
//   - remove X from 2F+2 acceptors: prepare set -= X (quorum F+1); then
//     accept set -= X (quorum F+1). Every key accepted by F+2 of 2F+2 is on
//     a majority of the rest: no catch-up.
//
// Every planned configuration passes Config.Validate (each prepare quorum
// meets each accept quorum), and so does each against the one before it:
// an attempt that began before a step may still be accepting with the older
// configuration while one that began after prepares with the newer. The
// caller waits until every proposer is Settled on a step before it starts
// the next, so only neighbours overlap.

// PlanStep is one configuration of a membership change's plan.
type PlanStep struct {
	// Config is what every proposer takes in this step.
	Config Config
	// CopyFences: before the step, the deletion GC age fences of the
	// current acceptors are copied to the joining one, so that a message
	// fenced elsewhere cannot land on it (PROTOCOL.md §9).
	CopyFences bool
	// CatchUp: once every proposer has settled on the step, every key is
	// rewritten through it (Proposer.Rewrite), so that each key's state is
	// on an accept quorum of Config.
	CatchUp bool
}

// ErrNotSteady: a membership change can start only from a configuration
// with equal prepare and accept sets and majority quorums (a finished
// change leaves one).
var ErrNotSteady = errors.New("caspaxos/protocol: a membership change needs equal prepare and accept sets with majority quorums")

// Steady reports whether c is a configuration a membership change may start
// from: the same acceptors in both sets (in any order) with majority
// quorums.
func (c Config) Steady() bool {
	p, a := slices.Clone(c.PrepareSet), slices.Clone(c.AcceptSet)
	slices.Sort(p)
	slices.Sort(a)
	q := len(a)/2 + 1
	return slices.Equal(p, a) && c.PrepareQuorum == q && c.AcceptQuorum == q
}

// PlanAdd returns the steps that add acceptor x to cur. The grown sets are
// sorted by ID.
func PlanAdd(cur Config, x NodeID) ([]PlanStep, error) {
	if err := checkStart(cur); err != nil {
		return nil, err
	}
	if x == 0 {
		return nil, errors.New("caspaxos/protocol: node ID 0 is reserved")
	}
	if slices.Contains(cur.AcceptSet, x) {
		return nil, fmt.Errorf("caspaxos/protocol: node %d is already an acceptor", x)
	}
	old := cur.AcceptSet
	grown := append(slices.Clone(old), x)
	slices.Sort(grown)
	v, n := cur.Version, len(old)
	if n%2 == 1 { // 2F+1 -> 2F+2
		f := (n - 1) / 2
		return checkPlan(cur, []PlanStep{
			{Config: config(v+1, old, f+1, grown, f+2), CopyFences: true, CatchUp: true},
			{Config: config(v+2, grown, f+2, grown, f+2)},
		})
	}
	f := (n - 2) / 2 // 2F+2 -> 2F+3
	return checkPlan(cur, []PlanStep{
		{Config: config(v+1, grown, f+2, grown, f+2), CopyFences: true},
	})
}

// PlanRemove returns the steps that remove acceptor x from cur. The rest
// keep their order.
func PlanRemove(cur Config, x NodeID) ([]PlanStep, error) {
	if err := checkStart(cur); err != nil {
		return nil, err
	}
	if !slices.Contains(cur.AcceptSet, x) {
		return nil, fmt.Errorf("caspaxos/protocol: node %d is not an acceptor", x)
	}
	old := cur.AcceptSet
	n := len(old)
	if n < 2 {
		return nil, errors.New("caspaxos/protocol: the last acceptor cannot be removed")
	}
	rest := slices.DeleteFunc(slices.Clone(old), func(id NodeID) bool { return id == x })
	v := cur.Version
	if n%2 == 1 { // 2F+3 -> 2F+2
		f := (n - 3) / 2
		return checkPlan(cur, []PlanStep{
			{Config: config(v+1, rest, f+2, rest, f+2), CatchUp: true},
		})
	}
	f := (n - 2) / 2 // 2F+2 -> 2F+1
	return checkPlan(cur, []PlanStep{
		{Config: config(v+1, rest, f+1, old, f+2)},
		{Config: config(v+2, rest, f+1, rest, f+1)},
	})
}

// checkStart refuses to plan from a configuration that is invalid, not
// steady, or too close to the highest version for the two versions a plan
// may take.
func checkStart(cur Config) error {
	if err := cur.Validate(); err != nil {
		return err
	}
	if !cur.Steady() {
		return ErrNotSteady
	}
	if cur.Version > math.MaxUint64-2 {
		return fmt.Errorf("caspaxos/protocol: configuration version %d is too close to 2^64 for the versions of a membership change", cur.Version)
	}
	return nil
}

// config returns a configuration with sets of its own, so that no step
// shares a slice with cur or with another step.
func config(v uint64, p []NodeID, pq int, a []NodeID, aq int) Config {
	return Config{Version: v, PrepareSet: slices.Clone(p), PrepareQuorum: pq, AcceptSet: slices.Clone(a), AcceptQuorum: aq}
}

// checkPlan validates every step, and that each step's prepare quorums meet
// the accept quorums of the step before and the other way round (an attempt
// that began before the step may still be accepting with the older
// configuration while one that began after prepares with the newer, and
// the reverse: an old attempt's prepare, a new attempt's accept).
func checkPlan(cur Config, steps []PlanStep) ([]PlanStep, error) {
	prev := cur
	for _, s := range steps {
		c := s.Config
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("caspaxos/protocol: planned configuration %d: %w", c.Version, err)
		}
		if !QuorumsIntersect(c.PrepareSet, c.PrepareQuorum, prev.AcceptSet, prev.AcceptQuorum) ||
			!QuorumsIntersect(prev.PrepareSet, prev.PrepareQuorum, c.AcceptSet, c.AcceptQuorum) {
			return nil, fmt.Errorf("caspaxos/protocol: planned configuration %d does not overlap the one before", c.Version)
		}
		prev = c
	}
	return steps, nil
}

// JoinFences is what a node joining the cluster takes from the members
// before it is added (the CopyFences step of a plan):
//
//   - Ages, the deletion GC age fences of the members' acceptors (the
//     highest of each proposer's), so that a message fenced elsewhere
//     cannot land on the joining acceptor (PROTOCOL.md §9 step 3);
//   - Counter, a ballot counter at or above every member's proposer's, so
//     that the joining proposer never makes a ballot, nor a version, below
//     a register deletion GC removed: GC fast-forwarded every proposer of
//     its round past each removed tombstone's ballot and version (step 2),
//     and a proposer that joins later starts from its own counter 0; where
//     the register is gone nothing refuses its low ballot, and a key
//     re-created with it would go back to version 1 (PROTOCOL.md §7).
//     The chaos harness found that (seed 10018, a membership plan).
//
// Every member's proposer took part in every finished GC round, so any one
// member's counter covers every removed register; the joiner still takes
// the highest of those that answer (MergeJoinFences).
type JoinFences struct {
	Ages    map[NodeID]uint64
	Counter uint64
}

// MergeJoinFences returns what a joiner takes from members whose fences are
// fs: the highest age of each proposer and the highest counter. Ages is
// never nil, and shares no map with fs.
func MergeJoinFences(fs ...JoinFences) JoinFences {
	out := JoinFences{Ages: map[NodeID]uint64{}}
	for _, f := range fs {
		for id, a := range f.Ages {
			out.Ages[id] = max(out.Ages[id], a)
		}
		out.Counter = max(out.Counter, f.Counter)
	}
	return out
}
