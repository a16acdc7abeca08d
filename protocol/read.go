package protocol

import (
	"errors"
	"slices"
)

// ErrSlowRead answers a FastRead that could not finish on the fast path (the
// acceptors disagreed: a change of the key is in flight, or one did not
// answer). Nothing was sent that changes any state; a Read, best at the
// key's home proposer, can finish it.
var ErrSlowRead = errors.New("caspaxos/protocol: the read could not finish on the fast path; nothing was changed")

// readOp is a read on the fast path (PROTOCOL.md §6): one round trip, no
// promise, nothing persisted. It asks the nearest read quorum first
// (readOrder) and the other acceptors only if those disagree or are slow.
type readOp struct {
	req      *request
	key      string
	ballot   Ballot // correlates replies; promises nothing
	cfg      Config // the configuration it was sent with
	fastOnly bool   // FastRead: answer ErrSlowRead instead of falling back
	order    []NodeID
	asked    nodeSet
	widened  bool // every acceptor was asked, and the last timer is set
	replied  nodeSet
	tally    []readTally // one per accepted ballot among the replies
}

// readTally counts the read replies that carry one accepted ballot.
type readTally struct {
	ballot Ballot
	n      int
}

// Read asks for the current state of key. If the key has changes waiting or
// in flight here, the read joins them as an identity change; otherwise it
// tries the fast path first and, if that cannot finish, runs the identity
// change x -> x.
func (p *Proposer) Read(id ReqID, key string) { p.read(id, key, false) }

// FastRead is Read for a proposer that is not the key's home: it tries only
// the fast path, and answers ErrSlowRead where Read would fall back to an
// identity change (whose prepare would take the key's promises away from
// its home proposer). If the key has changes waiting or in flight here, it
// joins them like Read.
func (p *Proposer) FastRead(id ReqID, key string) { p.read(id, key, true) }

func (p *Proposer) read(id ReqID, key string, fastOnly bool) {
	r := p.newRequest(id, key, nil)
	if ks := p.keys[key]; ks != nil && ks.busy() {
		p.enqueue(r)
		return
	}
	b, ok := p.newBallot()
	if !ok {
		p.answer(r, State{}, ErrExhausted)
		return
	}
	rd := &readOp{
		req:      r,
		key:      key,
		ballot:   b,
		cfg:      p.cfg,
		fastOnly: fastOnly,
		order:    p.readOrder(key, p.cfg.AcceptSet),
	}
	r.read = rd
	p.reads[rd.ballot] = rd
	first := p.readQuorum(rd)
	if p.tier != nil && p.ranked(rd.order) < first {
		// Too few acceptors the caller counts as reachable to make a read
		// quorum: ask all at once rather than wait for the widen timer.
		first = len(rd.order)
	}
	p.ask(rd, first)
}

// ranked counts the acceptors of order that are this node or in a tier.
func (p *Proposer) ranked(order []NodeID) int {
	n := 0
	for _, id := range order {
		if _, ok := p.tier[id]; ok || id == p.id {
			n++
		}
	}
	return n
}

// SetProximity tells the proposer how near the acceptors are, as tiers:
// tiers[0] the nearest, and so on; an acceptor in no tier counts as the
// farthest, possibly unreachable. A read asks its own node's acceptor
// first, then the others tier by tier, each tier in the key's Rank (which
// spreads reads of different keys over equally near acceptors); if this
// node and the tiers hold fewer acceptors than a read quorum, it asks all
// at once. Without it every other acceptor is in one tier. It changes only
// whom reads ask first, never a quorum.
func (p *Proposer) SetProximity(tiers [][]NodeID) {
	if len(tiers) == 0 {
		p.tier, p.tiers = nil, 0
		return
	}
	p.tier, p.tiers = make(map[NodeID]int), len(tiers)
	for i, t := range tiers {
		for _, id := range t {
			if _, ok := p.tier[id]; !ok {
				p.tier[id] = i
			}
		}
	}
}

// readOrder is the order in which a read asks the acceptors of set: this
// node first, then by proximity tier, then by the key's Rank.
func (p *Proposer) readOrder(key string, set []NodeID) []NodeID {
	out := Rank(key, set)
	tierOf := func(id NodeID) int {
		if id == p.id {
			return -1
		}
		if t, ok := p.tier[id]; ok {
			return t
		}
		if len(p.tier) == 0 {
			return 0
		}
		return p.tiers // in no tier: after every tier
	}
	slices.SortStableFunc(out, func(a, b NodeID) int { return tierOf(a) - tierOf(b) })
	return out
}

// ask sends the read to the acceptors of its order up to the first n, those
// not asked yet, and sets its timer: TimerWiden while some acceptors are
// still unasked (when it fires, the rest are asked), TimerRead once all
// were (when it fires, the read leaves the fast path).
func (p *Proposer) ask(rd *readOp, n int) {
	n = min(n, len(rd.order))
	if n <= len(rd.asked) {
		return
	}
	to := rd.order[len(rd.asked):n]
	rd.asked = append(rd.asked, to...)
	p.send(MsgRead, to, Message{Key: rd.key, Ballot: rd.ballot})
	switch {
	case len(rd.asked) < len(rd.order):
		p.timer(TimerWiden, rd.key, rd.ballot, 0)
	case !rd.widened:
		rd.widened = true
		p.timer(TimerRead, rd.key, rd.ballot, 0)
	}
}

func (p *Proposer) readQuorum(rd *readOp) int {
	return max(1, rd.cfg.ReadQuorum()-p.bugs.ReadQuorumShortBy)
}

func (p *Proposer) stepRead(rd *readOp, m Message) {
	if rd.replied.has(m.From) || !rd.asked.has(m.From) {
		return
	}
	rd.replied.add(m.From)
	same := rd.count(m.Accepted)
	need := p.readQuorum(rd)
	if same >= need {
		delete(p.reads, rd.ballot)
		p.answerAt(rd.req, Result{State: m.State, Ballot: m.Accepted})
		return
	}
	best := 0
	for _, t := range rd.tally {
		best = max(best, t.n)
	}
	switch {
	case best+len(rd.order)-len(rd.replied) < need:
		// Even if every acceptor still silent agreed with the largest group,
		// no ballot could reach the quorum.
		p.fallBack(rd)
	case best+len(rd.asked)-len(rd.replied) < need:
		// Those asked cannot agree enough; the others may.
		p.ask(rd, len(rd.order))
	}
}

// count adds one reply carrying the accepted ballot b and returns how many
// replies carried it. A read has at most one reply per acceptor, so a slice
// is both smaller and faster than a map here.
func (rd *readOp) count(b Ballot) int { return tallyBallot(&rd.tally, b) }

// fireRead handles a read's timer: TimerWiden asks the acceptors not asked
// yet, TimerRead ends the fast path.
func (p *Proposer) fireRead(rd *readOp, t Timer) {
	if t.Kind == TimerWiden {
		p.ask(rd, len(rd.order)) // does nothing if a disagreement already did
		return
	}
	p.fallBack(rd)
}

// fallBack sends a read that cannot finish on the fast path through the
// normal path as the identity change x -> x, or answers a FastRead with
// ErrSlowRead.
func (p *Proposer) fallBack(rd *readOp) {
	delete(p.reads, rd.ballot)
	rd.req.read = nil
	if rd.fastOnly {
		p.answer(rd.req, State{}, ErrSlowRead)
		return
	}
	p.enqueue(rd.req)
}
