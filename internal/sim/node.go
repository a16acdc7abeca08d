package sim

import (
	"errors"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// node is one member: an acceptor (protocol.Step over disk) and a proposer.
// The simulator is its driver and honours the core's duties:
//   - acceptor: Steps on a key are serialized (the event loop runs one at a
//     time) and each sees the register the last one left, synced or not;
//     requests below the floor are refused before Step (§12); a reply leaves
//     only once the acceptor ceiling covering its request is synced and
//     once the write it depends on is synced (its own, or for a promise or
//     a Step that wrote nothing, the key's latest write before it);
//   - proposer: a Ready's Ceiling is written and synced before its messages
//     leave; Readys are handled in order, so a Ready waits for every
//     ceiling asked for before it too (its ballots may need it); then its
//     messages are sent, its results handed over and its timers started.
type node struct {
	idx int
	id  protocol.NodeID
	up  bool
	// skew is how far the node's clock is off the virtual time (idempotent.go).
	skew time.Duration
	inc  uint64 // incarnation: rises at every crash, so stale events are ignored
	// lost: the node lost its disk and is refused under its identity; it
	// stays down until a membership change adds it back (Plan.DiskLoss).
	lost bool
	// fresh: the node has not joined the cluster yet. A membership change
	// that first adds it starts it (empty, its proposer at counter 0, like
	// a new server), and it joins once it has the members' fences and
	// counter (memberFences). Until then it takes no part: no clients, no
	// GC.
	fresh bool
	disk  *disk
	prop  *protocol.Proposer // nil while down

	replies     []pendingReply // acceptor replies waiting for their write's sync
	held        []heldReady    // proposer Readys waiting for their ceiling's sync
	scans       []pendingScan  // listing scan replies waiting for the writes before them to sync
	ceilingGate uint64         // seq of the latest ceiling write

	slowDisk, slowNet int // > 1 while the node is slow

	// For this incarnation's proposer (see retirement and Stats):
	pending     map[protocol.ReqID]string  // requests it has not answered -> key
	sentAccept  map[string]protocol.Ballot // highest accept ballot it sent (released), per key
	lastNext    map[string]protocol.Ballot // promise piggybacked on its last accept per key
	acceptsSent map[string]uint64          // accepts (messages) it has sent per key
}

type pendingReply struct {
	wait uint64 // the write seq it depends on
	msg  protocol.Message
	reg  protocol.Register // the register the reply describes
	// forgotten: GC removed the register after this reply was queued.
	forgotten bool
}

type heldReady struct {
	gate uint64 // the ceiling write seq it waits for
	rd   protocol.Ready
}

func newNode(idx int) *node {
	return &node{idx: idx, id: protocol.NodeID(idx + 1), disk: newDisk(), slowDisk: 1, slowNet: 1}
}

// configAfterRestart is the configuration n's proposer starts with: the one
// it synced last, or the run's first.
func (s *sim) configAfterRestart(n *node) protocol.Config {
	if n.disk.syncedConfig.Version > 0 {
		return n.disk.syncedConfig
	}
	return s.inv.configs[0]
}

// configOf is the configuration n's proposer uses, or will use when it
// restarts.
func (s *sim) configOf(n *node) protocol.Config {
	if n.up {
		return n.prop.Config()
	}
	return s.configAfterRestart(n)
}

// acceptorStep runs a request through the acceptor's checks (the age fence,
// the floor) and protocol.Step, and queues its reply behind the syncs it
// depends on (§12): the acceptor ceiling covering the request's ballots,
// and the key's latest write (for a promise: the latest before its own). Writes sync in order,
// so one seq to wait for covers both.
func (s *sim) acceptorStep(n *node, m protocol.Message) {
	if reply, fenced := protocol.Fenced(m, n.disk.fence[m.From]); fenced {
		s.stats.GCFenced++
		if !s.opts.Variant.NoAgeFence {
			s.send(n.idx, reply) // reveals nothing: needs no sync
			return
		}
	}
	if reply, refused := protocol.BelowFloor(m, n.disk.floor); refused {
		s.stats.FloorRefused++
		s.send(n.idx, reply) // reveals only the floor, a synced ceiling
		return
	}
	ceil, raised := n.disk.raiseAccCeiling(protocol.CeilingFor(m), s.plan.CeilingStep)
	if raised {
		s.stats.CeilingRaises++
		s.startSync(n)
	}
	prev := n.disk.get(m.Key)
	next, reply, persist := protocol.Step(prev, m)
	wait := n.disk.lastWrite[m.Key]
	if persist {
		s.inv.onAccept(s, n, m.Key, prev, next)
		w := n.disk.put(m.Key, next)
		s.startSync(n)
		if protocol.SyncBeforeReply(reply) {
			wait = w
		} else {
			// The promise's own write trails its reply; the key's
			// earlier writes (an accepted state the reply reveals) do
			// not: see protocol.SyncBeforeReply.
			s.stats.PromisesUnsynced++
		}
	}
	wait = max(wait, ceil)
	pr := pendingReply{wait: wait, msg: reply, reg: next}
	if s.opts.Variant.ReplyBeforeSync || n.disk.isSynced(wait) {
		s.sendReply(n, pr)
		return
	}
	n.replies = append(n.replies, pr)
}

func (s *sim) sendReply(n *node, pr pendingReply) {
	s.inv.onReply(s, n, pr)
	s.send(n.idx, pr.msg)
}

// startSync starts a sync of n's pending writes if none is in flight.
func (s *sim) startSync(n *node) {
	if !n.disk.beginSync() {
		return
	}
	d := s.jitter(n.slowDiskLatency(s.plan.DiskLatency))
	s.schedule(event{kind: evSyncDone, node: n.idx, inc: n.inc}, d)
}

func (n *node) slowDiskLatency(d time.Duration) time.Duration { return d * time.Duration(n.slowDisk) }

func (s *sim) syncDone(ev *event) {
	n := s.nodes[ev.node]
	if !n.up || n.inc != ev.inc {
		return
	}
	s.stats.Syncs++
	done := n.disk.finishSync()
	s.inv.onSync(s, n, done)
	s.watchSynced(n, done)
	s.releaseReplies(n)
	s.releaseScans(n)
	s.releaseReadys(n)
	s.startSync(n)
}

func (s *sim) releaseReplies(n *node) {
	keep := n.replies[:0]
	for _, pr := range n.replies {
		if n.disk.isSynced(pr.wait) {
			s.sendReply(n, pr)
		} else {
			keep = append(keep, pr)
		}
	}
	clear(n.replies[len(keep):])
	n.replies = keep
}

func (s *sim) releaseReadys(n *node) {
	i := 0
	for i < len(n.held) && n.disk.isSynced(n.held[i].gate) && s.failure == nil {
		s.release(n, n.held[i].rd)
		i++
	}
	clear(n.held[:i])
	n.held = n.held[i:]
}

// callProposer runs f on n's proposer and handles the Ready it leaves.
func (s *sim) callProposer(n *node, cause cause, f func(*protocol.Proposer)) {
	clear(s.computing)
	n.prop.SetNow(s.nodeMillis(n)) // as the server's driver does before every input
	f(n.prop)
	rd := n.prop.Ready()
	if rd.Empty() {
		return
	}
	keys := make([]string, len(rd.Results))
	for i, r := range rd.Results {
		keys[i] = n.pending[r.ID]
	}
	s.observe(n, rd, cause)
	if rd.Age != 0 {
		// An age learnt from a fence: persisted, but nothing waits for it
		// (safety never depends on it; see protocol.Proposer.learnFence).
		n.disk.putAge(rd.Age)
		s.startSync(n)
	}
	gate := n.ceilingGate
	if rd.Ceiling != 0 {
		gate = n.disk.putCeiling(rd.Ceiling)
		n.ceilingGate = gate
		s.startSync(n)
	}
	if len(n.held) == 0 && n.disk.isSynced(gate) {
		s.release(n, rd)
	} else {
		s.stats.HeldReadys++
		n.held = append(n.held, heldReady{gate: gate, rd: rd})
	}
	for i, r := range rd.Results {
		if !errors.Is(r.Err, protocol.ErrSlowRead) {
			s.ret.onAnswered(s, n, r.ID, keys[i])
		}
	}
}

// maxAccept is the highest accept ballot for key that n has sent or may
// still send (in a Ready waiting for its ceiling).
func (n *node) maxAccept(key string) protocol.Ballot {
	b := n.sentAccept[key]
	for _, h := range n.held {
		for _, m := range h.rd.Messages {
			if m.Kind == protocol.MsgAccept && m.Key == key && b.Less(m.Ballot) {
				b = m.Ballot
			}
		}
	}
	return b
}

// release does what a Ready asks, in its order, once its ceiling is synced.
func (s *sim) release(n *node, rd protocol.Ready) {
	for _, m := range rd.Messages {
		if m.Ballot.Counter > n.disk.syncedCeiling {
			s.fail("invariant: node %d sends %v with a ballot counter above its synced ceiling %d", n.id, m, n.disk.syncedCeiling)
			return
		}
		if m.Kind == protocol.MsgAccept {
			s.inv.onSend(ballotKey{m.Key, m.Ballot}, m.To)
			n.acceptsSent[m.Key]++
			if n.sentAccept[m.Key].Less(m.Ballot) {
				n.sentAccept[m.Key] = m.Ballot
			}
		}
		s.send(n.idx, m)
	}
	for _, r := range rd.Results {
		switch {
		case isGCReq(r.ID):
			s.gcResult(n, r)
		case isMemberReq(r.ID):
			s.memberResult(n, r)
		case isLeaseReq(r.ID):
			s.leaseResult(n, r)
		case isListReq(r.ID):
			s.listResult(r)
		case isWatchReq(r.ID):
			s.watchResult(n, r)
		default:
			s.clientResult(n, r)
		}
	}
	for _, t := range rd.Timers {
		s.schedule(event{kind: evTimer, node: n.idx, inc: n.inc, timer: t}, s.timerDelay(t))
	}
}

// timerDelay: attempt and read timeouts with jitter; backoff jittered and
// exponential in the retry count, capped.
func (s *sim) timerDelay(t protocol.Timer) time.Duration {
	switch t.Kind {
	case protocol.TimerAttempt:
		return s.jitter(s.plan.AttemptTimeout)
	case protocol.TimerRead:
		return s.jitter(s.plan.ReadTimeout)
	case protocol.TimerWiden:
		return s.jitter(s.plan.ReadTimeout / 4)
	case protocol.TimerGather:
		return s.jitter(s.plan.GatherDelay)
	}
	d := s.plan.BackoffBase << min(t.Retry, 10)
	return s.jitter(min(d, s.plan.BackoffMax))
}

func (s *sim) fire(ev *event) {
	n := s.nodes[ev.node]
	if !n.up || n.inc != ev.inc {
		return
	}
	cause := causeTimer
	if ev.timer.Kind == protocol.TimerRead {
		cause = causeReadTimer
	}
	s.callProposer(n, cause, func(p *protocol.Proposer) { p.Fire(ev.timer) })
}

// crash loses n's unsynced writes, its queued replies and Readys, and its
// proposer's memory.
func (s *sim) crash(n *node) {
	s.stats.Crashes++
	s.tracef("node %d crashes (%d unsynced writes, %d replies and %d Readys waiting)", n.id, len(n.disk.pending), len(n.replies), len(n.held))
	n.up = false
	s.down++
	n.disk.crash()
	n.prop = nil
	n.replies, n.held, n.scans = nil, nil, nil
	s.inv.onCrash(s, n)
	// The retirement rule and the lost operations still refer to the
	// incarnation that crashed; stale events are told apart only after.
	s.ret.onCrash(s, n)
	s.loseOps(n)
	s.loseLists(n)
	s.watchCrash(n)
	n.inc++
}

// restart brings n up with a fresh proposer that knows only the synced ceiling.
func (s *sim) restart(n *node) {
	if n.inc > 0 {
		s.down--
		s.tracef("node %d restarts with ceiling %d, acceptor floor %d", n.id, n.disk.syncedCeiling, n.disk.syncedAccCeiling)
	}
	// §12: the acceptor's floor is its synced ceiling, set before it
	// answers anything.
	n.disk.floor = n.disk.syncedAccCeiling
	if s.opts.Variant.NoFloor {
		n.disk.floor = 0
	}
	s.inv.onRestart(s, n)
	n.up = true
	n.inc++
	n.ceilingGate = 0
	n.pending = make(map[protocol.ReqID]string)
	n.sentAccept = make(map[string]protocol.Ballot)
	n.lastNext = make(map[string]protocol.Ballot)
	n.acceptsSent = make(map[string]uint64)
	p, err := protocol.NewProposer(protocol.ProposerConfig{
		ID:             n.id,
		Acceptors:      s.configAfterRestart(n),
		Ceiling:        n.disk.syncedCeiling,
		Age:            n.disk.syncedAge,
		CeilingStep:    s.plan.CeilingStep,
		MaxBatch:       s.plan.MaxBatch,
		MaxCachedKeys:  s.plan.MaxCachedKeys,
		MaxCachedBytes: s.plan.MaxCachedBytes,
		Gather:         s.plan.Gather,
		Bugs:           s.opts.Variant.Bugs,
	})
	if err != nil {
		s.fail("cannot start node %d: %v", n.id, err)
		return
	}
	p.SetProximity(s.proximity(n))
	n.prop = p
}

// proximity gives node n's proposer a fixed, made-up view of which peers
// are nearer: the next node of the pool in its own tier, the one after in
// another, the rest in none. Reads then ask acceptors in orders that differ
// from node to node and from the key's rank alone.
func (s *sim) proximity(n *node) [][]protocol.NodeID {
	pool := len(s.nodes)
	next := func(d int) protocol.NodeID { return s.nodes[(n.idx+d)%pool].id }
	return [][]protocol.NodeID{{next(1)}, {next(2)}}
}
