package sim

import (
	"errors"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// The deletion GC (PROTOCOL.md §9) as an event of the run: one GC at a time,
// on a key chosen at random, driven by ticks, against every fault the plan
// injects. Each step is retried on the nodes that have not done it durably
// (a crash before the sync undoes it), and waits while a node is down:
//
//  1. an up node's proposer runs ProposeGC (x -> x accepted by every
//     acceptor); if the state is live, or the write fails, the GC ends;
//  2. on every proposer, Forget(key, G), then the age and the ceiling synced;
//  3. on every acceptor, the fence raised to the ages of step 2, synced
//     (Variant.NoAgeFence writes it but lets fenced requests through: the
//     broken GC, whose stats still count what the fence would refuse);
//  4. on every acceptor, the register removed if protocol.Collectible says
//     so (it still holds the tombstone under G and no promise above the one
//     the GC write left), synced.
//
// A GC that passed step 1 is an operation of the key's history (opGC),
// from its start until step 4 is done everywhere (or the end of the run).

type gcPhase uint8

const (
	gcIdle gcPhase = iota
	gcWrite
	gcForget
	gcFence
	gcRemove
)

// gcReqBase sets GC requests' IDs apart from clients'.
const gcReqBase protocol.ReqID = 1 << 62

type gcState struct {
	phase   gcPhase
	key     string
	coord   int
	inc     uint64
	req     protocol.ReqID
	started time.Duration
	tomb    protocol.Tombstone // from step 1 on
	ages    map[protocol.NodeID]uint64
	marks   []gcMark
	op      *op
	nextReq protocol.ReqID
	ops     []*op // the GC runs that passed step 1, for the history
}

// gcMark is one node's progress in the current step.
type gcMark struct {
	issued bool
	inc    uint64
	seqs   [2]uint64 // writes that must be synced
	done   bool
}

func isGCReq(id protocol.ReqID) bool { return id >= gcReqBase }

func (s *sim) scheduleGC() {
	if s.plan.GCEvery > 0 {
		s.schedule(event{kind: evGC}, s.jitter(s.plan.GCEvery))
	}
}

// gcTick advances the GC in progress, or starts one.
func (s *sim) gcTick() {
	g := &s.gc
	defer func() {
		if g.phase == gcIdle {
			s.schedule(event{kind: evGC}, s.jitter(s.plan.GCEvery))
		} else {
			// About one round trip: a real GC moves on as its calls return.
			s.schedule(event{kind: evGC}, s.jitter(2*s.plan.NetLatency+s.plan.DiskLatency))
		}
	}()
	switch g.phase {
	case gcIdle:
		if !s.member.active {
			s.gcStart()
		}
	case gcWrite:
		n := s.nodes[g.coord]
		if !n.up || n.inc != g.inc {
			g.phase = gcIdle // the request died with its proposer
		} else if s.now-g.started > s.plan.Deadline {
			s.callProposer(n, causeCancel, func(p *protocol.Proposer) { p.Cancel(g.req) })
		}
	case gcForget, gcFence, gcRemove:
		s.gcStep()
	}
}

func (s *sim) gcStart() {
	g := &s.gc
	n := s.pickNode(func(n *node) bool { return n.up })
	if n == nil {
		return
	}
	// Mostly a key that some acceptor holds as a tombstone (what a real
	// GC's queue holds), now and then any key (a stale queue entry).
	var deleted []string
	for _, k := range s.keys {
		for _, m := range s.nodes {
			if st := m.disk.get(k).State; st.Version > 0 && !st.Exists() {
				deleted = append(deleted, k)
				break
			}
		}
	}
	if len(deleted) > 0 && s.chance(0.9) {
		g.key = deleted[s.rng.IntN(len(deleted))]
	} else {
		g.key = s.keys[s.rng.IntN(len(s.keys))]
	}
	g.nextReq++
	g.req = gcReqBase + g.nextReq
	g.phase, g.coord, g.inc, g.started = gcWrite, n.idx, n.inc, s.now
	n.pending[g.req] = g.key
	s.stats.GCStarted++
	s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.ProposeGC(g.req, g.key) })
}

// gcResult takes the answer to step 1.
func (s *sim) gcResult(n *node, r protocol.Result) {
	g := &s.gc
	if g.phase != gcWrite || r.ID != g.req {
		s.fail("sim: node %d answered GC request %d, which is not waiting", n.id, r.ID)
		return
	}
	if r.Err != nil || r.State.Exists() {
		if r.Err != nil && !errors.Is(r.Err, protocol.ErrAborted) && !errors.Is(r.Err, protocol.ErrUnknownOutcome) {
			s.fail("sim: GC write on %q failed with %v", g.key, r.Err)
		}
		g.phase = gcIdle
		return
	}
	if protocol.RequestsHeld(r.State, s.nodeMillis(n), s.requestWindow()) {
		// Its request IDs may still be retried against (idempotent.go).
		s.stats.GCHeld++
		g.phase = gcIdle
		return
	}
	g.tomb = protocol.Tombstone{Key: g.key, Ballot: r.Ballot, Version: r.State.Version, Promise: r.Promise}
	g.ages = make(map[protocol.NodeID]uint64)
	g.op = &op{client: len(s.clients), in: input{key: g.key, kind: opGC}, call: g.started, status: opDone, out: output{outcome: outOK}}
	g.ops = append(g.ops, g.op)
	s.tracef("GC of %q: %s accepted by every acceptor under %s", g.key, r.State, r.Ballot)
	s.gcNext(gcForget)
}

func (s *sim) gcNext(ph gcPhase) {
	g := &s.gc
	g.phase = ph
	g.marks = make([]gcMark, len(s.nodes))
	if ph == gcRemove {
		s.inv.collected[g.key] = g.tomb.Ballot
	}
	s.gcStep()
}

// gcStep does the current step on every node that has not done it
// durably, and moves on once all have.
func (s *sim) gcStep() {
	g := &s.gc
	all := true
	for _, n := range s.nodes {
		m := &g.marks[n.idx]
		if m.done {
			continue
		}
		if n.fresh {
			// Not in the cluster: it takes the members' counter and
			// fences when it joins (see memberFences).
			m.done = true
			continue
		}
		// Done once its writes are synced in the incarnation that made
		// them; a crash before that lost them: do it again.
		if m.issued && m.inc == n.inc && n.disk.isSynced(m.seqs[0]) && n.disk.isSynced(m.seqs[1]) {
			m.done = true
			continue
		}
		all = false
		if !n.up || (m.issued && m.inc == n.inc) {
			continue // down, or its writes are still syncing
		}
		*m = gcMark{issued: true, inc: n.inc}
		switch g.phase {
		case gcForget:
			var age uint64
			s.callProposer(n, causeTimer, func(p *protocol.Proposer) { age, _ = p.Forget(g.key, g.tomb.Ballot, g.tomb.Version) })
			g.ages[n.id] = age
			m.seqs = [2]uint64{n.disk.putAge(age), n.ceilingGate}
		case gcFence:
			m.seqs[0] = n.disk.putFence(g.ages)
		case gcRemove:
			// disk.get is the newest register stepped, pending writes
			// included, and the removal queues behind them: unlike the
			// runtime, there is no write in flight to wait for.
			if protocol.Collectible(g.tomb, n.disk.get(g.key)) != protocol.CollectRemove {
				// Nothing there, or written or promised since: not the
				// tombstone to remove. The runtime keeps the latter
				// queued for a later round; here a later GC run picks
				// the key again (most pick a key holding a tombstone).
				*m = gcMark{done: true}
				continue
			}
			m.seqs[0] = n.disk.remove(g.key)
			// The acceptor forgets the key: what it told of it, or is
			// about to tell in replies already queued, binds it no more.
			s.inv.revealed[n.idx][g.key] = protocol.Register{}
			for i := range n.replies {
				if n.replies[i].msg.Key == g.key {
					n.replies[i].forgotten = true
				}
			}
			s.stats.GCRemoved++
		}
		s.startSync(n)
	}
	if !all {
		return
	}
	switch g.phase {
	case gcForget:
		s.gcNext(gcFence)
	case gcFence:
		s.gcNext(gcRemove)
	case gcRemove:
		g.op.ret = s.now
		g.op = nil
		g.phase = gcIdle
		s.stats.GCDone++
		s.tracef("GC of %q done", g.key)
	}
}
