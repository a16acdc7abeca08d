package sim

import (
	"fmt"
	"strings"

	"github.com/caspaxos/caspaxos/protocol"
)

// faultKind is a kind of fault that comes and goes.
type faultKind uint8

const (
	faultPartition faultKind = iota + 1
	faultCrash
	faultSlow
)

var faultNames = [...]string{faultPartition: "partition", faultCrash: "crash", faultSlow: "slow"}

func (f faultKind) String() string { return faultNames[f] }

// partitionKind is the shape of a partition.
type partitionKind uint8

const (
	// Symmetric: a minority and the rest cannot talk at all.
	partSymmetric partitionKind = iota
	// One-way: one node cannot send to some others, which can still send to it.
	partOneWay
	// Ring: each node talks only to its two neighbours on a ring (with 5
	// nodes each still sees a majority, but no two see the same one); with
	// 3 nodes, a line (the middle node sees everyone, the ends not each other).
	partRing
	partitionKinds
)

var partitionNames = [...]string{partSymmetric: "symmetric", partOneWay: "one-way", partRing: "ring"}

// scheduleFaults schedules the first fault of each kind the plan switches on.
func (s *sim) scheduleFaults() {
	if s.plan.PartitionEvery > 0 {
		s.schedule(event{kind: evFaultStart, fault: faultPartition}, s.jitter(s.plan.PartitionEvery))
	}
	if s.plan.CrashEvery > 0 {
		s.schedule(event{kind: evFaultStart, fault: faultCrash}, s.jitter(s.plan.CrashEvery))
	}
	if s.plan.SlowEvery > 0 {
		s.schedule(event{kind: evFaultStart, fault: faultSlow}, s.jitter(s.plan.SlowEvery))
	}
}

func (s *sim) faultStart(f faultKind) {
	switch f {
	case faultPartition:
		s.partition(partitionKind(s.rng.IntN(int(partitionKinds))))
		s.schedule(event{kind: evFaultEnd, fault: f}, s.jitter(s.plan.PartitionFor))
	case faultCrash:
		// At most a minority is down at once; the next crash is scheduled
		// either way, so crashes overlap.
		if n := s.pickNode(func(n *node) bool { return n.up }); n != nil && s.down < len(s.nodes)/2 && s.quorumsSurvive(n) {
			s.crash(n)
			if s.chance(s.plan.DiskLoss) {
				s.loseDisk(n)
			}
			s.schedule(event{kind: evFaultEnd, fault: f, node: n.idx}, s.jitter(s.plan.DownFor))
		}
		s.schedule(event{kind: evFaultStart, fault: f}, s.jitter(s.plan.CrashEvery))
	case faultSlow:
		if n := s.pickNode(func(n *node) bool { return n.slowDisk == 1 && n.slowNet == 1 }); n != nil {
			s.slow(n)
			s.schedule(event{kind: evFaultEnd, fault: f, node: n.idx}, s.jitter(s.plan.SlowFor))
		}
		s.schedule(event{kind: evFaultStart, fault: f}, s.jitter(s.plan.SlowEvery))
	}
}

func (s *sim) faultEnd(ev *event) {
	switch ev.fault {
	case faultPartition:
		for _, row := range s.blocked {
			clear(row)
		}
		s.tracef("partition heals")
		s.schedule(event{kind: evFaultStart, fault: faultPartition}, s.jitter(s.plan.PartitionEvery))
	case faultCrash:
		if n := s.nodes[ev.node]; n.up {
			return // added back by a membership change already
		} else if n.lost {
			s.tracef("node %d stays down: its disk was lost, and the cluster refuses it under its identity", n.id)
			return
		}
		s.restart(s.nodes[ev.node])
	case faultSlow:
		n := s.nodes[ev.node]
		n.slowDisk, n.slowNet = 1, 1
		s.tracef("node %d is fast again", n.id)
	}
}

// loseDisk empties the acceptor of n, which just crashed: its disk was
// lost (its proposer keeps its ceiling, as a node coming back under a new
// identity would never reuse a ballot). Unless Variant.AmnesiaRestart, the
// node stays down, refused, until a membership change adds it back.
func (s *sim) loseDisk(n *node) {
	s.stats.DiskLosses++
	n.disk.wipe()
	if s.opts.Variant.AmnesiaRestart {
		// What it told others it no longer knows: invariant 3 may
		// catch that, and so may the checker.
		s.tracef("node %d lost its disk and will come back empty under its old identity (broken)", n.id)
		return
	}
	n.lost = true
	clear(s.inv.revealed[n.idx])
	clear(s.inv.syncedPromise[n.idx])
	s.tracef("node %d lost its disk", n.id)
}

// pickNode returns a random node that satisfies ok, or nil.
func (s *sim) pickNode(ok func(*node) bool) *node {
	var fits []*node
	for _, n := range s.nodes {
		if ok(n) {
			fits = append(fits, n)
		}
	}
	if len(fits) == 0 {
		return nil
	}
	return fits[s.rng.IntN(len(fits))]
}

// slow makes n's disk, network or both slower.
func (s *sim) slow(n *node) {
	s.stats.SlowPeriods++
	what := s.rng.IntN(3)
	if what != 1 {
		n.slowDisk = s.plan.SlowFactor
	}
	if what != 0 {
		n.slowNet = s.plan.SlowFactor
	}
	s.tracef("node %d slows down: disk x%d, network x%d", n.id, n.slowDisk, n.slowNet)
}

// partition blocks links into a partition of the given kind.
func (s *sim) partition(kind partitionKind) {
	n := len(s.nodes)
	perm := s.rng.Perm(n)
	cut := func(a, b int) { s.blocked[a][b] = true }
	switch kind {
	case partSymmetric:
		s.stats.PartitionsSymmetric++
		k := 1 + s.rng.IntN(n/2)
		for _, a := range perm[:k] {
			for _, b := range perm[k:] {
				cut(a, b)
				cut(b, a)
			}
		}
	case partOneWay:
		s.stats.PartitionsOneWay++
		k := 1 + s.rng.IntN(n-1)
		for _, b := range perm[1 : 1+k] {
			cut(perm[0], b)
		}
	case partRing:
		s.stats.PartitionsRing++
		if n == 3 {
			cut(perm[0], perm[2])
			cut(perm[2], perm[0])
			break
		}
		for i, a := range perm {
			for j, b := range perm {
				if d := (j - i + n) % n; d > 1 && d < n-1 {
					cut(a, b)
				}
			}
		}
	}
	s.tracef("%s partition: %s", partitionNames[kind], s.describeLinks())
}

// describeLinks lists the blocked links.
func (s *sim) describeLinks() string {
	var cuts []string
	for a, row := range s.blocked {
		for b, cut := range row {
			if cut {
				cuts = append(cuts, fmt.Sprintf("%d-x->%d", a+1, b+1))
			}
		}
	}
	return strings.Join(cuts, " ")
}

// quorumsSurvive reports whether, with n down too, the up acceptors of the
// latest configuration still fill a prepare quorum and an accept quorum.
func (s *sim) quorumsSurvive(n *node) bool {
	up := func(set []protocol.NodeID) int {
		c := 0
		for _, id := range set {
			if m := s.nodes[id-1]; m.up && m != n {
				c++
			}
		}
		return c
	}
	return up(s.cfg.PrepareSet) >= s.cfg.PrepareQuorum && up(s.cfg.AcceptSet) >= s.cfg.AcceptQuorum
}
