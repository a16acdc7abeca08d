package sim

import (
	"errors"
	"fmt"
	"slices"

	"github.com/caspaxos/caspaxos/protocol"
)

// Membership change (PROTOCOL.md §8) as an event of the run. The run keeps
// a pool of nodes, all of them proposers; the configuration names which are
// acceptors (3 to 5 of them). One change at a time, never during a deletion
// GC (whose "every acceptor" must hold still), driven by ticks like GC, each
// step redone on nodes that crashed before syncing it and waiting while a
// node is down.
//
// The plan is the protocol's (protocol.PlanAdd, protocol.PlanRemove, which
// the runtime carries out too; protocol/membership.go lists its steps for
// each size). The run carries out each PlanStep as up to three steps of its
// own: X gets the age fences of the acceptors (CopyFences; see below);
// every proposer takes the step's configuration; catch-up (CatchUp: a
// Rewrite of every key, through the new accept set).
//
// "Every proposer takes c" is done on a node once c is synced on its disk
// (a restart takes the synced configuration) and its proposer is Settled
// at c's version.
//
// A new acceptor starts empty. A node added back after it was removed comes
// back with its acceptor's registers wiped (its proposer keeps its ceiling:
// a real replacement needs a fresh node ID for that, see the server's
// membership): stale registers are harmless while the other acceptors hold
// newer ones, but once deletion GC has removed a key from them, a stale
// register would be the newest a prepare finds, and its value would come
// back (the simulator found this). And a new acceptor must get the age
// fences of the others before anyone sends it a request, so that a message
// delayed from before a deletion GC cannot land on it.
//
// Variant.NoCatchUp skips the catch-up: the broken change.

type memberStepKind uint8

const (
	stepFences memberStepKind = iota + 1
	stepConfig
	stepCatchUp
)

type memberStep struct {
	kind memberStepKind
	node int             // stepFences: the new acceptor
	cfg  protocol.Config // stepConfig, stepCatchUp
}

type memberState struct {
	active  bool
	what    string
	steps   []memberStep
	marks   []gcMark
	removed map[int]bool // nodes that were acceptors once and were removed

	// catch-up progress
	keysDone []bool
	req      map[protocol.ReqID]int // rewrite request -> key index
	reqNode  map[protocol.ReqID]int
	nextReq  protocol.ReqID
}

// memberReqBase sets catch-up requests' IDs apart from clients' and GC's.
const memberReqBase protocol.ReqID = 1 << 61

func isMemberReq(id protocol.ReqID) bool { return id >= memberReqBase && id < gcReqBase }

func (s *sim) scheduleMembership() {
	if s.plan.MemberEvery > 0 {
		s.schedule(event{kind: evMember}, s.jitter(s.plan.MemberEvery))
	}
}

func (s *sim) memberTick() {
	m := &s.member
	if !m.active {
		if s.gc.phase == gcIdle {
			s.memberStart()
		}
	} else {
		s.memberStep()
	}
	if m.active {
		s.schedule(event{kind: evMember}, s.jitter(2*s.plan.NetLatency+s.plan.DiskLatency))
	} else {
		s.schedule(event{kind: evMember}, s.jitter(s.plan.MemberEvery))
	}
}

// memberStart plans the next change from the current configuration.
func (s *sim) memberStart() {
	m := &s.member
	cur := s.cfg
	size := len(cur.AcceptSet)
	var outside []int
	for _, n := range s.nodes {
		if !slices.Contains(cur.AcceptSet, n.id) && !slices.Contains(cur.PrepareSet, n.id) {
			outside = append(outside, n.idx)
		}
	}
	grow := size < 5 && len(outside) > 0 && (size == 3 || s.chance(0.5))
	if !grow && size <= 3 {
		return
	}
	var x int // the node added or removed
	var plan []protocol.PlanStep
	var err error
	if grow {
		x = outside[s.rng.IntN(len(outside))]
		xid := s.nodes[x].id
		if n := s.nodes[x]; n.lost {
			// Started again empty, and given the current configuration
			// (as a joining node is), before it is added back.
			n.lost = false
			n.disk.syncedConfig = cur
			s.wipe(n)
			s.restart(n)
			s.stats.LostReadded++
		} else if n.fresh {
			// A new server: empty, its proposer at counter 0, given the
			// current configuration as it joins.
			// It stays out of the cluster's work (no clients) until it
			// has taken the members' fences and counter.
			n.disk.syncedConfig = cur
			s.restart(n)
			s.stats.FreshJoins++
		} else if m.removed[x] {
			s.wipe(s.nodes[x])
		}
		plan, err = protocol.PlanAdd(cur, xid)
		m.what = fmt.Sprintf("grow %d -> %d: add node %d", size, size+1, xid)
	} else {
		xid := cur.AcceptSet[s.rng.IntN(size)]
		for _, id := range cur.AcceptSet {
			if s.nodes[id-1].lost {
				xid = id // the operator removes the node that lost its disk first
			}
		}
		x = int(xid) - 1
		plan, err = protocol.PlanRemove(cur, xid)
		m.removed[x] = true
		m.what = fmt.Sprintf("shrink %d -> %d: remove node %d", size, size-1, xid)
	}
	if err != nil {
		s.fail("sim: membership could not plan to %s: %v", m.what, err)
		return
	}
	m.active, m.steps = true, s.memberSteps(plan, x)
	s.stats.MemberChanges++
	s.tracef("membership: %s", m.what)
	s.memberBegin()
}

// memberSteps turns the protocol's plan into the run's steps: the fences
// copied to node x before a step that asks for it, then the step's
// configuration, then its catch-up (left out by Variant.NoCatchUp).
func (s *sim) memberSteps(plan []protocol.PlanStep, x int) []memberStep {
	var steps []memberStep
	for _, p := range plan {
		if p.CopyFences {
			steps = append(steps, memberStep{kind: stepFences, node: x})
		}
		steps = append(steps, memberStep{kind: stepConfig, cfg: p.Config})
		if p.CatchUp && !s.opts.Variant.NoCatchUp {
			steps = append(steps, memberStep{kind: stepCatchUp, cfg: p.Config})
		}
	}
	return steps
}

// memberBegin starts the first step left.
func (s *sim) memberBegin() {
	m := &s.member
	m.marks = make([]gcMark, len(s.nodes))
	st := m.steps[0]
	switch st.kind {
	case stepConfig:
		s.cfg = st.cfg
		s.inv.configs = append(s.inv.configs, st.cfg)
		s.tracef("membership: configuration %d: prepare %v/%d, accept %v/%d", st.cfg.Version, st.cfg.PrepareSet, st.cfg.PrepareQuorum, st.cfg.AcceptSet, st.cfg.AcceptQuorum)
	case stepCatchUp:
		m.keysDone = make([]bool, len(s.keys))
		m.req = make(map[protocol.ReqID]int)
		m.reqNode = make(map[protocol.ReqID]int)
	}
	s.memberStep()
}

func (s *sim) memberStep() {
	m := &s.member
	if !m.active {
		return
	}
	st := m.steps[0]
	var done bool
	switch st.kind {
	case stepFences:
		done = s.memberFences(st.node)
	case stepConfig:
		done = s.memberConfig(st.cfg)
	case stepCatchUp:
		done = s.memberCatchUp()
	}
	if !done {
		return
	}
	m.steps = m.steps[1:]
	if len(m.steps) == 0 {
		m.active = false
		s.stats.MemberDone++
		s.tracef("membership: %s done", m.what)
		return
	}
	s.memberBegin()
}

// memberFences gives node x the highest age fences of the acceptors, and
// moves its proposer's counter up to the highest synced ceiling of theirs,
// merged by server/membership's rule (protocol.MergeJoinFences): deletion
// GC fast-forwarded the members' proposers past every register it removed
// (§9 step 2), not a proposer that was not in the cluster then, and where a
// register is gone nothing refuses a low ballot: a key re-created with it
// would go back to a version below the removed tombstone's (§7). Both are
// synced before the step is done. Variant.JoinWithoutCounter leaves the
// counter out.
func (s *sim) memberFences(x int) bool {
	n, mk := s.nodes[x], &s.member.marks[x]
	if mk.issued && mk.inc == n.inc && n.disk.isSynced(mk.seqs[0]) && n.disk.isSynced(mk.seqs[1]) {
		n.fresh = false
		return true
	}
	if !n.up || (mk.issued && mk.inc == n.inc) {
		return false
	}
	var from []protocol.JoinFences
	for _, id := range s.cfg.AcceptSet {
		d := s.nodes[id-1].disk
		from = append(from, protocol.JoinFences{Ages: d.fence, Counter: d.syncedCeiling})
	}
	f := protocol.MergeJoinFences(from...)
	counter := f.Counter
	*mk = gcMark{issued: true, inc: n.inc, seqs: [2]uint64{n.disk.putFence(f.Ages)}}
	if !s.opts.Variant.JoinWithoutCounter {
		var err error
		s.callProposer(n, causeTimer, func(p *protocol.Proposer) { err = p.FastForward(counter) })
		if err != nil {
			s.fail("sim: node %d could not fast-forward to counter %d: %v", n.id, counter, err)
			return false
		}
		mk.seqs[1] = n.ceilingGate
	}
	s.startSync(n)
	return false
}

// memberConfig has every proposer take c durably and settle on it.
func (s *sim) memberConfig(c protocol.Config) bool {
	all := true
	for _, n := range s.nodes {
		mk := &s.member.marks[n.idx]
		if mk.done {
			continue
		}
		if n.lost || n.fresh {
			// Gone under this identity, or not joined yet: it takes the
			// configuration of the day when it is added.
			mk.done = true
			continue
		}
		if n.up && n.disk.syncedConfig.Version >= c.Version && n.prop.Settled(c.Version) {
			mk.done = true
			continue
		}
		all = false
		if !n.up || (mk.issued && mk.inc == n.inc) {
			continue
		}
		*mk = gcMark{issued: true, inc: n.inc}
		if n.prop.Config().Version < c.Version {
			var err error
			s.callProposer(n, causeTimer, func(p *protocol.Proposer) { err = p.SetConfig(c) })
			if err != nil {
				s.fail("sim: node %d refused configuration %d: %v", n.id, c.Version, err)
				return false
			}
		}
		mk.seqs[0] = n.disk.putConfig(c)
		s.startSync(n)
	}
	return all
}

// memberCatchUp rewrites every key through the new accept set, a key at a
// time per node, until each has been rewritten once.
func (s *sim) memberCatchUp() bool {
	m := &s.member
	busy := make(map[int]bool)
	for id, k := range m.req {
		n := s.nodes[m.reqNode[id]]
		if !n.up || n.pending[id] == "" {
			delete(m.req, id) // lost with its node
			delete(m.reqNode, id)
			continue
		}
		busy[k] = true
	}
	left := false
	for k, key := range s.keys {
		if m.keysDone[k] {
			continue
		}
		left = true
		if busy[k] {
			continue
		}
		n := s.pickNode(func(n *node) bool { return n.up })
		if n == nil {
			return false
		}
		m.nextReq++
		id := memberReqBase + m.nextReq
		m.req[id], m.reqNode[id] = k, n.idx
		n.pending[id] = key
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Rewrite(id, key) })
	}
	return !left
}

// memberResult takes the answer to a catch-up rewrite.
func (s *sim) memberResult(n *node, r protocol.Result) {
	m := &s.member
	k, ok := m.req[r.ID]
	if !ok {
		return // from an earlier catch-up, or its node crashed meanwhile
	}
	delete(m.req, r.ID)
	delete(m.reqNode, r.ID)
	switch {
	case r.Err == nil:
		if !m.keysDone[k] {
			m.keysDone[k] = true
			s.stats.CatchUpKeys++
		}
	case errors.Is(r.Err, protocol.ErrAborted), errors.Is(r.Err, protocol.ErrUnknownOutcome):
		// tried again at the next tick
	default:
		s.fail("sim: catch-up rewrite of %q failed with %v", s.keys[k], r.Err)
	}
}

// wipe empties n's acceptor before it is added back: it crashes and comes
// back with no registers and no fences (its proposer's ceiling, age and
// configuration are kept; see the comment at the top).
func (s *sim) wipe(n *node) {
	up := n.up
	if up {
		s.crash(n)
	}
	n.disk.wipe()
	clear(s.inv.revealed[n.idx])
	clear(s.inv.syncedPromise[n.idx])
	s.stats.Wipes++
	s.tracef("node %d's acceptor is emptied", n.id)
	if up {
		s.restart(n) // else its crash's end restarts it
	}
}
