package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Leases in the simulator (kv/lease.go, COORDINATION.md "Leases").
//
// In about half the plans a few leases live beside the keys, each a
// register the membership catch-up and the invariants cover like any key.
// Each has a holder that grants it and keeps it alive every third of its
// TTL (once a lease ended, the holder grants the next of its leaseLives
// IDs: a grant never reuses an ID), now and then pausing for two TTLs so that it may expire; a reaper
// at a random node proposes kv.LeaseExpire for every lease now and then,
// with its node's time fixed before the change runs; readers at random
// nodes read a lease and say whether it is expired. Clocks are those of
// idempotent.go: each node's is off by up to half the skew bound.
//
// Checked: no lease is seen expired (in a chosen state, or by a reader)
// before its TTL has passed since the send time of a renewal (its grant
// or a keep-alive) that was acknowledged to its holder and that the
// expired state includes. Variant LeaseLocalExpiry makes readers decide
// expiry from their node's clock at read time (renewed + ttl < now,
// without the skew margin), which a fast clock turns into an early
// expiry.

// leaseLives is the number of lease IDs a holder grants in turn, one
// after another lease ended.
const leaseLives = 32

// leaseReqBase sets lease requests' IDs apart from clients', catch-ups'
// and GC's.
const leaseReqBase protocol.ReqID = 1 << 60

func isLeaseReq(id protocol.ReqID) bool { return id >= leaseReqBase && id < listReqBase }

// drawLeases draws the plan's leases from a stream of their own.
func drawLeases(seed uint64, p *Plan) {
	rng := rand.New(rand.NewPCG(seed, seed^0x1ea5_e000_0000_0002))
	if rng.IntN(2) == 0 {
		return
	}
	p.Leases = 1 + rng.IntN(3)
	p.LeaseTTL = between(rng, 20*time.Millisecond, 80*time.Millisecond)
	if p.MaxSkew == 0 {
		p.MaxSkew = between(rng, 0, p.LeaseTTL/4)
	}
	if p.ClockSeed == 0 {
		p.ClockSeed = rng.Uint64() | 1
	}
	p.Locks = rng.IntN(2) == 0 // lock.go
}

type leaseOpKind uint8

const (
	leaseGrant leaseOpKind = iota + 1
	leaseKeep
	leaseExpire
	leaseRead
	leaseAttach // a put of a holder's attached key (attached.go)
	leaseSweep  // the reaper's delete of an attached key
)

// leaseRenewal is a renewal acknowledged to a holder: the renewal time it
// left in the register, and when the holder sent it.
type leaseRenewal struct {
	renewed int64
	sent    time.Duration
}

type leaseHolder struct {
	key      string   // the lease of its current life
	next     []string // the IDs of its later lives (a grant never reuses an ID)
	attached string   // its attached key (attached.go)
	pending  protocol.ReqID
	holds    bool
	renewals []leaseRenewal // of the lease's current life
	// life counts the lease's grants; validUntil is the send time of the
	// life's last acknowledged renewal plus the TTL (the client's
	// KeepAlive.ValidUntil; lock.go).
	life       int
	validUntil time.Duration
}

type leaseOp struct {
	kind   leaseOpKind
	holder int // for grants and keep-alives
	key    string
	sent   time.Duration
}

type leaseState struct {
	attached attachedState
	rng      *rand.Rand
	holders  []*leaseHolder
	ops      map[protocol.ReqID]leaseOp
	next     protocol.ReqID
}

// Actors of evLease events (event.client): holders 0..n-1, then these.
const (
	leaseActorReaper = -1
	leaseActorReader = -2
)

// setLeases adds the leases' keys and starts their actors.
func (s *sim) setLeases() {
	if s.plan.Leases == 0 {
		return
	}
	l := &s.lease
	l.rng = rand.New(rand.NewPCG(s.plan.ClockSeed, 11))
	l.ops = make(map[protocol.ReqID]leaseOp)
	l.attached = attachedState{index: map[string]string{}, ended: map[string]bool{}, chosen: map[string]map[uint64]protocol.State{}}
	for i := range s.plan.Leases {
		h := &leaseHolder{attached: attachedKeyOf(i)}
		s.keys = append(s.keys, h.attached)
		s.w.inflight = append(s.w.inflight, 0)
		for life := range leaseLives {
			key := kv.LeaseKey(uint64(life*s.plan.Leases + i + 1))
			s.keys = append(s.keys, key)
			s.w.inflight = append(s.w.inflight, 0)
			h.next = append(h.next, key)
		}
		h.key, h.next = h.next[0], h.next[1:]
		l.holders = append(l.holders, h)
		s.schedule(event{kind: evLease, client: i}, s.leaseDelay(3))
	}
	s.schedule(event{kind: evLease, client: leaseActorReaper}, s.leaseDelay(3))
	s.schedule(event{kind: evLease, client: leaseActorReader}, s.leaseDelay(5))
}

// leaseDelay is about a part of the TTL, jittered.
func (s *sim) leaseDelay(part int) time.Duration {
	d := s.plan.LeaseTTL / time.Duration(part)
	return d/2 + time.Duration(s.lease.rng.Int64N(int64(d)+1))
}

func (s *sim) leaseUpNode() *node {
	var up []*node
	for _, n := range s.nodes {
		if n.up && !n.fresh {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[s.lease.rng.IntN(len(up))]
}

// leaseTick runs an actor.
func (s *sim) leaseTick(ev *event) {
	l := &s.lease
	switch ev.client {
	case leaseActorReaper:
		if n := s.leaseUpNode(); n != nil {
			now, skew := s.nodeMillis(n), s.plan.MaxSkew.Milliseconds()
			for _, h := range l.holders {
				s.leasePropose(n, leaseOp{kind: leaseExpire, holder: -1, key: h.key}, kv.LeaseExpire(now, skew))
			}
			s.sweepAttached(n)
		}
		s.schedule(event{kind: evLease, client: leaseActorReaper}, s.leaseDelay(3))
	case leaseActorReader:
		if n := s.leaseUpNode(); n != nil {
			h := l.holders[l.rng.IntN(len(l.holders))]
			s.leasePropose(n, leaseOp{kind: leaseRead, holder: -1, key: h.key}, nil)
		}
		s.schedule(event{kind: evLease, client: leaseActorReader}, s.leaseDelay(5))
	default:
		s.leaseHolderTick(ev)
	}
}

// leaseHolderTick: a timeout of the holder's request, or its next step.
func (s *sim) leaseHolderTick(ev *event) {
	h := s.lease.holders[ev.client]
	if ev.req != 0 {
		if h.pending == ev.req { // no answer in time: unknown, not counted
			h.pending = 0
			s.schedule(event{kind: evLease, client: ev.client}, s.leaseDelay(3))
		}
		return
	}
	if h.pending != 0 {
		return
	}
	n := s.leaseUpNode()
	if n == nil {
		s.schedule(event{kind: evLease, client: ev.client}, s.leaseDelay(3))
		return
	}
	now := s.nodeMillis(n)
	var id protocol.ReqID
	if h.holds {
		s.attachOps(n, h)
		id = s.leasePropose(n, leaseOp{kind: leaseKeep, holder: ev.client, key: h.key}, kv.LeaseKeepAlive(now))
	} else {
		id = s.leasePropose(n, leaseOp{kind: leaseGrant, holder: ev.client, key: h.key}, kv.LeaseGrant(s.plan.LeaseTTL.Milliseconds(), now, 0))
	}
	h.pending = id
	s.schedule(event{kind: evLease, client: ev.client, req: id}, s.plan.Deadline)
}

// leasePropose sends a lease request to n's proposer (a read for a nil change).
func (s *sim) leasePropose(n *node, op leaseOp, ch protocol.Change) protocol.ReqID {
	l := &s.lease
	l.next++
	id := leaseReqBase + l.next
	op.sent = s.now
	l.ops[id] = op
	n.pending[id] = op.key
	if ch == nil {
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Read(id, op.key) })
	} else {
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Propose(id, op.key, ch) })
	}
	return id
}

// leaseResult takes a lease request's answer.
func (s *sim) leaseResult(n *node, r protocol.Result) {
	if r.ID >= lockReqBase {
		s.lockResult(n, r)
		return
	}
	l := &s.lease
	op, ok := l.ops[r.ID]
	if !ok {
		return
	}
	delete(l.ops, r.ID)
	switch op.kind {
	case leaseRead:
		if r.Err == nil {
			s.leaseReadAnswer(n, op, r.State)
		}
		return
	case leaseExpire, leaseAttach, leaseSweep:
		return // the chosen state tells (checkLease, checkAttached)
	}
	h := l.holders[op.holder]
	if h.pending != r.ID {
		return // timed out already: its outcome is unknown to the holder
	}
	h.pending = 0
	lease, err := kv.LeaseOf(r.State)
	switch {
	case r.Err == nil && err == nil:
		if op.kind == leaseGrant {
			h.renewals = h.renewals[:0]
			s.stats.LeaseGrants++
			s.lockLeaseLifeEnds(op.holder, h.validUntil)
			h.life++
			h.validUntil = 0
		} else {
			s.stats.LeaseRenewals++
		}
		h.validUntil = max(h.validUntil, op.sent+s.plan.LeaseTTL)
		h.holds = true
		h.renewals = append(h.renewals, leaseRenewal{renewed: lease.RenewedMillis, sent: op.sent})
	case errors.Is(r.Err, kv.ErrLeaseExists):
		h.holds = true // a grant whose answer was lost took effect: keep it alive
		// A new life whose validity the holder does not know until a
		// keep-alive is acknowledged.
		s.lockLeaseLifeEnds(op.holder, h.validUntil)
		h.life++
		h.validUntil = 0
	case errors.Is(r.Err, kv.ErrLeaseNotFound) && op.key == h.key:
		// The lease ended; its ID is never granted again, so the next
		// life takes the next one (the last life's holder keeps trying).
		h.holds = false
		s.lockLeaseLifeEnds(op.holder, h.validUntil)
		if len(h.next) > 0 {
			h.key, h.next, h.renewals = h.next[0], h.next[1:], nil
		}
	}
	next := s.leaseDelay(3)
	if h.holds && l.rng.IntN(4) == 0 {
		next = 2 * s.plan.LeaseTTL // the holder pauses: the lease may expire
	}
	s.schedule(event{kind: evLease, client: op.holder}, next)
}

// leaseReadAnswer checks what a reader at n says of a lease it read.
func (s *sim) leaseReadAnswer(n *node, op leaseOp, st protocol.State) {
	lease, err := kv.LeaseOf(st)
	if err != nil {
		return
	}
	expired := lease.State == kv.LeaseExpired
	if s.opts.Variant.LeaseLocalExpiry && lease.State == kv.LeaseLive {
		// The broken variant: expiry from the reader's clock, now.
		expired = s.nodeMillis(n) > lease.RenewedMillis+lease.TTLMillis
	}
	s.stats.LeaseReads++
	if expired {
		s.checkEarlyExpiry(op.key, lease, fmt.Sprintf("read at node %d", n.id))
	}
}

// checkLease checks a state chosen on a lease's key.
func (s *sim) checkLease(key string, st protocol.State) {
	if s.plan.Leases == 0 {
		return
	}
	s.checkAttached(key, st)
	lease, err := kv.LeaseOf(st)
	if err != nil || lease.State != kv.LeaseExpired {
		return
	}
	s.stats.LeaseExpiries++
	s.checkEarlyExpiry(key, lease, "chosen")
}

// checkEarlyExpiry fails the run if lease, seen expired now, includes an
// acknowledged renewal sent less than its TTL ago.
func (s *sim) checkEarlyExpiry(key string, lease kv.Lease, how string) {
	for _, h := range s.lease.holders {
		if h.key != key {
			continue
		}
		for _, r := range h.renewals {
			if r.renewed <= lease.RenewedMillis && s.now < r.sent+time.Duration(lease.TTLMillis)*time.Millisecond {
				s.fail("leases: %q seen expired (%s) at %v, %v after the send of an acknowledged renewal, under its TTL %dms (clock skew bound %v)",
					key, how, s.now, s.now-r.sent, lease.TTLMillis, s.plan.MaxSkew)
				return
			}
		}
	}
}
