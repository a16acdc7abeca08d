package sim

import (
	"errors"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Locks in the simulator (kv/lock.go, COORDINATION.md "Locks and
// elections").
//
// In half the plans with leases (Plan.Locks), one lock register lives
// beside the keys, and each lease holder of lease.go is also a lock actor:
// while it believes its lease live, it acquires the lock with its lease
// (kv.LockAcquire at a random node, with the node's time), holds it a
// while, and releases it, unless its lease's holder pauses and the lease
// expires under it. A breaker at random nodes reads the lock, reads its
// holder's lease, and when that lease is dead proposes kv.LockBreak
// guarded by the lock's version it read.
//
// A hold is an actor's, from the acknowledgement of its acquire until
// the earlier of the send of its release and the end of its lease's
// validity as the holder knows it (the send time of the last
// acknowledged renewal of the lease's life in which the acquire was sent,
// plus the TTL: the client's KeepAlive.ValidUntil). An acquire
// acknowledged after that validity has ended is no hold.
//
// Checked, in the checker's real time: no two holds overlap, and each
// hold's token is above every earlier hold's. Variant
// LockTokenNotVersion takes as the token a count of acquires at the
// answering node instead of the register's version, which the second
// check catches; variant LockBreakLiveLease breaks a hold without reading
// its lease, which the first catches.

// lockReqBase sets lock requests' IDs apart, within the lease range
// (isLeaseReq), above every lease request's.
const lockReqBase = leaseReqBase + 1<<57

// lockName is the simulator's one lock.
const lockName = "sim"

type lockOpKind uint8

const (
	lockAcquireOp lockOpKind = iota + 1
	lockReleaseOp
	lockReadOp      // the breaker reads the lock
	lockLeaseReadOp // ... then its holder's lease
	lockBreakOp
)

type lockOp struct {
	kind  lockOpKind
	actor int    // acquires and releases
	life  int    // the actor's lease life at an acquire's send
	lease uint64 // the lease ID an acquire or release names
	sent  time.Duration
	// holder and version: what the breaker read of the lock.
	holder  uint64
	version uint64
}

// lockHold is a hold as the checker sees it.
type lockHold struct {
	actor    int
	life     int
	lease    uint64 // the lease ID that holds it
	version  uint64 // the register's version after the acquire (what a release names)
	token    uint64
	start    time.Duration
	released time.Duration // the release's send (0: none yet)
	// validEnd is the lease's validity once its life ended (0: the life
	// goes on, see end).
	validEnd time.Duration
}

type lockActor struct {
	pending protocol.ReqID
	hold    *lockHold
}

type lockState struct {
	actors []*lockActor
	holds  []*lockHold
	ops    map[protocol.ReqID]lockOp
	next   protocol.ReqID
	// acquires counts acknowledged acquires per node (the broken token).
	acquires map[int]uint64
}

// Actors of evLock events (event.client): lease holders' lock actors
// 0..n-1, then the breaker.
const lockActorBreaker = -1

// setLocks adds the lock's key and starts its actors (after setLeases).
func (s *sim) setLocks() {
	if !s.plan.Locks || s.plan.Leases == 0 {
		return
	}
	k := &s.locks
	k.ops = make(map[protocol.ReqID]lockOp)
	k.acquires = make(map[int]uint64)
	s.keys = append(s.keys, kv.LockKey(lockName))
	s.w.inflight = append(s.w.inflight, 0)
	for i := range s.plan.Leases {
		k.actors = append(k.actors, &lockActor{})
		s.schedule(event{kind: evLock, client: i}, s.leaseDelay(2))
	}
	s.schedule(event{kind: evLock, client: lockActorBreaker}, s.leaseDelay(2))
}

// lockTick runs an actor, or times out its request.
func (s *sim) lockTick(ev *event) {
	if ev.client == lockActorBreaker {
		if n := s.leaseUpNode(); n != nil {
			s.lockPropose(n, lockOp{kind: lockReadOp}, nil)
		}
		s.schedule(event{kind: evLock, client: lockActorBreaker}, s.leaseDelay(2))
		return
	}
	a := s.locks.actors[ev.client]
	if ev.req != 0 {
		if a.pending == ev.req { // no answer in time: unknown
			a.pending = 0
			s.schedule(event{kind: evLock, client: ev.client}, s.leaseDelay(2))
		}
		return
	}
	if a.pending != 0 {
		return
	}
	h := s.lease.holders[ev.client]
	n := s.leaseUpNode()
	switch {
	case n == nil:
	case a.hold != nil && s.lease.rng.IntN(2) == 0:
		lease, version := a.hold.lease, a.hold.version
		if s.opts.Variant.LockReleaseAnyHold {
			version = 0 // the broken variant: no token
		}
		a.hold.released = s.now
		a.hold = nil
		s.lockPropose(n, lockOp{kind: lockReleaseOp, actor: ev.client, lease: lease}, kv.LockRelease(lease, version))
	case a.hold == nil && h.holds && s.now < h.validUntil:
		// The lease of the holder's current life (a grant never reuses an ID).
		id, _ := kv.LeaseIDOf(h.key)
		want := kv.Lock{Holder: id, DelayMillis: s.plan.LeaseTTL.Milliseconds() / 4}
		a.pending = s.lockPropose(n, lockOp{kind: lockAcquireOp, actor: ev.client, life: h.life, lease: id}, kv.LockAcquire(want, s.nodeMillis(n)))
		s.schedule(event{kind: evLock, client: ev.client, req: a.pending}, s.plan.Deadline)
		return
	}
	s.schedule(event{kind: evLock, client: ev.client}, s.leaseDelay(2))
}

// lockPropose sends a lock request to n's proposer (a read for a nil
// change; the breaker's lease read reads the holder's lease).
func (s *sim) lockPropose(n *node, op lockOp, ch protocol.Change) protocol.ReqID {
	k := &s.locks
	k.next++
	id := lockReqBase + k.next
	op.sent = s.now
	k.ops[id] = op
	key := kv.LockKey(lockName)
	if op.kind == lockLeaseReadOp {
		key = kv.LeaseKey(op.holder)
	}
	n.pending[id] = key
	if ch == nil {
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Read(id, key) })
	} else {
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Propose(id, key, ch) })
	}
	return id
}

// lockResult takes a lock request's answer.
func (s *sim) lockResult(n *node, r protocol.Result) {
	k := &s.locks
	op, ok := k.ops[r.ID]
	if !ok {
		return
	}
	delete(k.ops, r.ID)
	if r.Err != nil && op.kind != lockAcquireOp {
		return
	}
	switch op.kind {
	case lockReadOp:
		l, err := kv.LockOf(r.State)
		switch {
		case err != nil || l.Holder == 0:
		case s.opts.Variant.LockBreakLiveLease:
			// The broken variant: break without asking the lease.
			s.lockPropose(n, lockOp{kind: lockBreakOp, holder: l.Holder, version: r.State.Version}, kv.LockBreak(l.Holder, r.State.Version, s.nodeMillis(n)))
		default:
			s.lockPropose(n, lockOp{kind: lockLeaseReadOp, holder: l.Holder, version: r.State.Version}, nil)
		}
	case lockLeaseReadOp:
		lease, err := kv.LeaseOf(r.State)
		if errors.Is(err, kv.ErrLeaseNotFound) || (err == nil && lease.State != kv.LeaseLive) {
			s.lockPropose(n, lockOp{kind: lockBreakOp, holder: op.holder, version: op.version}, kv.LockBreak(op.holder, op.version, s.nodeMillis(n)))
		}
	case lockBreakOp:
		s.tracef("lock: broken at version %d, its holder %d's lease dead", r.State.Version, op.holder)
		s.stats.LockBreaks++
	case lockAcquireOp:
		s.lockAcquired(n, op, r)
	}
}

// lockAcquired takes an acquire's answer: a hold, checked, if its lease
// is still valid in the life the acquire was sent in.
func (s *sim) lockAcquired(n *node, op lockOp, r protocol.Result) {
	a := s.locks.actors[op.actor]
	if a.pending != r.ID {
		return // timed out already: unknown to the actor
	}
	a.pending = 0
	s.schedule(event{kind: evLock, client: op.actor}, s.leaseDelay(2))
	if r.Err != nil {
		s.tracef("lock: actor %d's acquire refused: %v", op.actor, r.Err)
		return
	}
	h := s.lease.holders[op.actor]
	if h.life != op.life || s.now >= h.validUntil {
		s.tracef("lock: actor %d acquired at version %d too late to act (life %d, now %d; valid until %v)", op.actor, r.State.Version, op.life, h.life, h.validUntil)
		// Acquired too late to act on: release it (Client.Lock does).
		s.lockPropose(n, lockOp{kind: lockReleaseOp, actor: op.actor, lease: op.lease}, kv.LockRelease(op.lease, r.State.Version))
		return
	}
	token := r.State.Version
	if s.opts.Variant.LockTokenNotVersion {
		s.locks.acquires[n.idx]++
		token = s.locks.acquires[n.idx]
	}
	hold := &lockHold{actor: op.actor, life: op.life, lease: op.lease, version: r.State.Version, token: token, start: s.now}
	for _, p := range s.locks.holds {
		if end := s.lockHoldEnd(p); end > hold.start {
			s.fail("locks: actor %d acquired %q at %v (token %d) while actor %d held it since %v (token %d) until %v",
				op.actor, lockName, s.now, token, p.actor, p.start, p.token, end)
			return
		}
		if p.token >= token {
			s.fail("locks: actor %d acquired %q at %v with token %d, not above the token %d of actor %d's earlier hold (from %v)",
				op.actor, lockName, s.now, token, p.token, p.actor, p.start)
			return
		}
	}
	s.stats.LockHolds++
	s.locks.holds = append(s.locks.holds, hold)
	a.hold = hold
}

// lockHoldEnd is when hold p ends: its release's send, or its lease's
// validity, whichever is first.
func (s *sim) lockHoldEnd(p *lockHold) time.Duration {
	end := p.validEnd
	if h := s.lease.holders[p.actor]; end == 0 && h.life == p.life {
		end = h.validUntil
	}
	if p.released != 0 {
		end = min(end, p.released)
	}
	return end
}

// lockLeaseLifeEnds freezes the validity of an actor's hold when its
// lease's life ends (a new grant), and forgets the hold.
func (s *sim) lockLeaseLifeEnds(actor int, validUntil time.Duration) {
	if len(s.locks.actors) == 0 {
		return
	}
	a := s.locks.actors[actor]
	if a.hold != nil {
		a.hold.validEnd = validUntil
		a.hold = nil
	}
}
