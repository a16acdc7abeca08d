package protocol

import "container/list"

type phase uint8

const (
	phasePrepare phase = iota + 1
	phaseAccept
	phaseBackoff
)

// proposal is one batch of changes of one key on its way to being chosen,
// across as many attempts (ballots) as it takes.
type proposal struct {
	key   string
	batch []*request
	phase phase
	retry int

	ballot  Ballot  // of the current attempt
	seq     uint64  // numbers the attempt's phases, for their timers
	cfg     Config  // the configuration the current attempt uses
	replied nodeSet // acceptors that answered the current attempt
	oks     int
	refused int
	// behind counts the prepare refusals that showed a ballot above ours:
	// the key moved on (its home committing through its cache, PROTOCOL.md
	// §5) rather than another proposer dueling for it.
	behind int

	// Phase 1: the highest accepted ballot and its state among the promises,
	// and how many promises from accept-set members carried each ballot.
	highest      Ballot
	highestState State
	agree        map[Ballot]int

	// Phase 2.
	next   Ballot // promise piggybacked on the accept (PROTOCOL.md §5)
	cached bool   // the first attempt came from the cache, on base
	base   State

	// all: the batch is one deletion-GC identity write, whose accept needs
	// every acceptor of the accept set (PROTOCOL.md §9 step 1).
	all bool
	// pinned: the key was garbage-collected while this attempt was in
	// flight; its messages keep the age it began with (pinAge), so that
	// acceptors fence them (§9 steps 2-3). A new attempt unpins.
	pinned bool
	pinAge uint64

	// sent lists every accept this batch sent, oldest first. Ballots grow,
	// so sent[0] is the lowest. It decides, after a failed accept, whether
	// the batch may be applied afresh, must be committed as it was, or has
	// an unknown outcome (see prepared).
	sent []sentAccept
}

type sentAccept struct {
	ballot  Ballot
	set     []NodeID // the accept set it went to
	value   State
	results []Result
	noop    bool // the accept left the state as it found it
	// refusedBy lists the acceptors that refused this accept. A refusal is
	// final (promises only rise), so once every acceptor of the accept set
	// refused, the state was accepted nowhere and never will be.
	refusedBy nodeSet
}

// live reports whether this accept changed the state and may have been
// accepted somewhere.
func (s *sentAccept) live() bool {
	if s.noop {
		return false
	}
	for _, id := range s.set {
		if !s.refusedBy.has(id) {
			return true
		}
	}
	return false
}

func (pr *proposal) reset(b Ballot, ph phase) {
	pr.ballot = b
	pr.phase = ph
	pr.seq++
	pr.replied = pr.replied[:0]
	pr.oks, pr.refused, pr.behind = 0, 0, 0
	pr.highest, pr.highestState = Ballot{}, State{}
	pr.agree = nil
}

// kick starts the next batch of key if nothing is in flight for it.
func (p *Proposer) kick(key string, ks *keyState) {
	if ks.active != nil || len(ks.queue) == 0 || len(ks.queue) < ks.hold {
		p.gcKey(key, ks)
		return
	}
	ks.hold = 0
	n := min(len(ks.queue), p.maxB)
	all := ks.queue[0].all
	if all {
		n = 1 // a GC write goes alone
	} else {
		for i, r := range ks.queue[:n] {
			if r.all {
				n = i
				break
			}
		}
	}
	pr := &proposal{key: key, batch: make([]*request, n), all: all}
	copy(pr.batch, ks.queue[:n])
	ks.queue = append(ks.queue[:0], ks.queue[n:]...)
	for _, r := range pr.batch {
		r.inBatch = true
	}
	ks.active = pr
	pr.cfg = p.cfg
	if e := p.takeCache(key); e != nil {
		p.startCached(pr, e)
		return
	}
	p.startPrepare(pr)
}

// gcKey forgets a key with nothing in flight, nothing waiting and no hold.
func (p *Proposer) gcKey(key string, ks *keyState) {
	if !ks.busy() && ks.hold == 0 {
		delete(p.keys, key)
	}
}

// startPrepare begins phase 1 with a fresh ballot (PROTOCOL.md §3 step 1).
func (p *Proposer) startPrepare(pr *proposal) {
	b, ok := p.newBallot()
	if !ok {
		p.abandonExhausted(pr)
		return
	}
	pr.reset(b, phasePrepare)
	pr.cfg = p.cfg
	pr.pinned = false
	pr.agree = make(map[Ballot]int)
	p.sendFor(pr, MsgPrepare, pr.cfg.PrepareSet, Message{Key: pr.key, Ballot: pr.ballot})
	p.attemptTimer(pr)
}

// sendFor sends a message of pr's current attempt.
func (p *Proposer) sendFor(pr *proposal, kind Kind, to []NodeID, m Message) {
	p.send(kind, to, m)
	if pr.pinned {
		msgs := p.ready.Messages[len(p.ready.Messages)-len(to):]
		for i := range msgs {
			msgs[i].Age = pr.pinAge
		}
	}
}

func (p *Proposer) attemptTimer(pr *proposal) {
	p.ready.Timers = append(p.ready.Timers, Timer{Kind: TimerAttempt, Key: pr.key, Ballot: pr.ballot, Retry: pr.retry, Seq: pr.seq})
}

// startCached skips phase 1: the acceptors promised e.next with the last
// accept, and e.state is what that accept chose (PROTOCOL.md §5).
func (p *Proposer) startCached(pr *proposal, e *cacheEntry) {
	pr.reset(e.next, phaseAccept)
	pr.cached, pr.base = true, e.state
	value, results := p.compute(pr, e.state)
	p.startAccept(pr, value, results, value.Equal(e.state))
}

// compute applies the batch, in order, to base. Each change sees the state
// the previous one left; a refusal leaves it as it was.
func (p *Proposer) compute(pr *proposal, base State) (State, []Result) {
	cur := base
	results := make([]Result, len(pr.batch))
	for i, r := range pr.batch {
		results[i] = Result{ID: r.id, State: cur}
		if r.change == nil || r.done {
			continue
		}
		change := r.change
		if r.timed != nil {
			change = r.timed(p.now)
		}
		w, err := change(cur)
		if err != nil {
			results[i].Err = err
			continue
		}
		next, err := apply(cur, w, pr.ballot.Counter)
		if err != nil {
			results[i].Err = err // a refusal: the state is left as it is
			continue
		}
		cur = next
		results[i].State = cur
	}
	return cur, results
}

func (p *Proposer) stepPromise(pr *proposal, m Message) {
	if pr.phase != phasePrepare || pr.replied.has(m.From) || !pr.cfg.inPrepareSet(m.From) {
		return
	}
	pr.replied.add(m.From)
	pr.oks++
	if pr.oks == 1 || pr.highest.Less(m.Accepted) {
		pr.highest, pr.highestState = m.Accepted, m.State
	}
	if pr.cfg.inAcceptSet(m.From) {
		pr.agree[m.Accepted]++
	}
	if pr.oks >= pr.cfg.PrepareQuorum {
		p.prepared(pr)
	}
}

// prepared runs once a prepare quorum promised (PROTOCOL.md §3 step 3).
//
// If an earlier accept of this batch failed, the batch may already be in the
// chosen history. Let H be the highest accepted ballot the promises show:
//   - H is one of our accepts: that accept's state survives; commit it again
//     and answer with its results (not with a second application).
//   - H is below all our accepts: none of them can be chosen under its own
//     ballot (every acceptor of this quorum promised above them and
//     accepted none of them), so the batch is applied afresh. But an
//     acceptor outside this quorum may still hold one, and a later prepare
//     may build on it; only a higher ballot accepted by a quorum rules that
//     out, so the fresh application is committed by an accept even if it
//     changes nothing.
//   - otherwise another proposer's state may or may not include ours: the
//     outcome is unknown.
//
// Accepts that changed nothing, or that every acceptor refused, do not count.
func (p *Proposer) prepared(pr *proposal) {
	var changing []*sentAccept
	for i := range pr.sent {
		if pr.sent[i].live() {
			changing = append(changing, &pr.sent[i])
		}
	}
	if len(changing) > 0 {
		for _, s := range changing {
			if s.ballot == pr.highest {
				p.startAccept(pr, s.value, s.results, false)
				return
			}
		}
		if !pr.highest.Less(changing[0].ballot) {
			p.abandonUnknown(pr)
			return
		}
	}
	base := pr.highestState
	value, results := p.compute(pr, base)
	noop := value.Equal(base)
	// §4 and §6: a batch that changes nothing may answer without an accept
	// if enough promises agree that the state they show is chosen, and no
	// earlier accept of the batch is still live (see above).
	// A GC write, or a catch-up rewrite, always sends its accept.
	if noop && len(changing) == 0 && !pr.all && !pr.forced() && pr.agree[pr.highest] >= pr.cfg.ReadQuorum() {
		for i := range results {
			results[i].Ballot = pr.highest
		}
		p.succeed(pr, results)
		return
	}
	p.startAccept(pr, value, results, noop)
}

// startAccept sends phase 2 under pr.ballot with the next promise riding on it.
func (p *Proposer) startAccept(pr *proposal, value State, results []Result, noop bool) {
	pr.reset(pr.ballot, phaseAccept)
	// No counter left for the next promise: the accept carries none (the
	// acceptors keep B as the promise) and the key is not cached.
	pr.next, _ = p.newBallot()
	pr.sent = append(pr.sent, sentAccept{ballot: pr.ballot, set: pr.cfg.AcceptSet, value: value, results: results, noop: noop})
	p.sendFor(pr, MsgAccept, pr.cfg.AcceptSet, Message{Key: pr.key, Ballot: pr.ballot, Next: pr.next, State: value})
	p.attemptTimer(pr)
}

// forced reports whether a request of the batch must reach the acceptors.
func (pr *proposal) forced() bool {
	for _, r := range pr.batch {
		if r.force {
			return true
		}
	}
	return false
}

// acceptQuorum is how many acceptors must accept pr's current attempt.
func (pr *proposal) acceptQuorum() int {
	if pr.all {
		return len(pr.cfg.AcceptSet)
	}
	return pr.cfg.AcceptQuorum
}

func (p *Proposer) stepAccepted(pr *proposal, m Message) {
	if pr.phase != phaseAccept || pr.replied.has(m.From) || !pr.cfg.inAcceptSet(m.From) {
		return
	}
	pr.replied.add(m.From)
	pr.oks++
	if pr.oks < pr.acceptQuorum() {
		return
	}
	last := pr.sent[len(pr.sent)-1]
	// A full accept quorum: the only outcome that keeps the cache (§5).
	// Not so for a promise gathered under an older configuration, or one
	// that belongs to the key's life before its GC (a pinned attempt).
	if !pr.pinned && pr.cfg.Version == p.cfg.Version && !pr.next.IsZero() {
		p.putCache(pr.key, pr.next, last.value)
	}
	for i := range last.results {
		last.results[i].Ballot = pr.ballot
		last.results[i].Promise = maxBallot(pr.ballot, pr.next)
	}
	p.succeed(pr, last.results)
}

func (p *Proposer) stepConflict(pr *proposal, m Message) {
	// A conflict showing our own ballot answers a duplicate of our prepare
	// (which shares its ballot with the accept that follows it): the
	// acceptor did promise it, and may still accept.
	if pr.replied.has(m.From) || m.Seen == pr.ballot {
		return
	}
	var set []NodeID
	var quorum int
	switch pr.phase {
	case phasePrepare:
		set, quorum = pr.cfg.PrepareSet, pr.cfg.PrepareQuorum
	case phaseAccept:
		set, quorum = pr.cfg.AcceptSet, pr.acceptQuorum()
	default:
		return
	}
	pr.replied.add(m.From)
	pr.refused++
	if pr.phase == phasePrepare && pr.ballot.Less(m.Seen) {
		pr.behind++
	}
	if pr.refused > len(set)-quorum {
		p.fail(pr, false)
	}
}

// fail ends the current attempt without a quorum and schedules a retry.
// Any outcome but a full accept quorum drops the cache entry (§5).
func (p *Proposer) fail(pr *proposal, timedOut bool) {
	p.dropCache(pr.key)
	if p.bugs.KeepCacheOnTimeout && timedOut && pr.cached && len(pr.sent) == 1 {
		// Deliberately broken, as a widely copied implementation is: the
		// timed-out accept keeps its ballot in the cache, so the next change
		// sends a different state under the same ballot.
		p.putCache(pr.key, pr.ballot, pr.base)
		p.abandonUnknown(pr)
		return
	}
	// Backoff grows only after a duel: a timeout or a refused accept. A
	// prepare refused only by ballots above ours was behind; Step has moved
	// the counter past them, so the next prepare should go soon. Were its
	// backoff to grow as well, a proposer that is not the key's home (the
	// membership catch-up's Rewrite) would wait ever longer while the home
	// kept committing through its cache, raising the key's promise past
	// every ballot it then sent: starved for as long as the key was busy.
	behind := !timedOut && pr.phase == phasePrepare && pr.refused > 0 && pr.behind == pr.refused
	pr.phase = phaseBackoff
	retry := 1
	if !behind {
		pr.retry++
		retry = pr.retry
	}
	p.ready.Timers = append(p.ready.Timers, Timer{Kind: TimerBackoff, Key: pr.key, Ballot: pr.ballot, Retry: retry, Seq: pr.seq})
}

// changed reports whether any accept this batch sent may have changed the state.
func (pr *proposal) changed() bool {
	for i := range pr.sent {
		if pr.sent[i].live() {
			return true
		}
	}
	return false
}

// noteRefusal records an acceptor's refusal of any accept this batch sent,
// the current one or an earlier one whose replies arrive late.
func (pr *proposal) noteRefusal(m Message) {
	if !m.Ballot.Less(m.Seen) {
		// The acceptor has promised nothing past our ballot: this answers
		// a duplicate of the prepare that shares the accept's ballot, and
		// the acceptor may still accept. (A refused accept always shows a
		// promise or an accepted ballot above its own.)
		return
	}
	if !m.Accepted.Less(m.Ballot) {
		// The acceptor's accepted ballot is at or past ours: it may have
		// accepted ours before (this may answer a duplicate), so the
		// refusal proves nothing.
		return
	}
	for i := range pr.sent {
		if pr.sent[i].ballot == m.Ballot {
			pr.sent[i].refusedBy.add(m.From)
		}
	}
}

func (p *Proposer) succeed(pr *proposal, results []Result) {
	for i, r := range pr.batch {
		p.answerAt(r, results[i])
	}
	p.holdNext(pr)
	p.finish(pr)
}

// holdNext holds back the batch after pr if its key is contended
// (ProposerConfig.Gather): until as many changes wait as pr carried plus
// those already waiting, or until TimerGather.
func (p *Proposer) holdNext(pr *proposal) {
	if !p.gather || pr.all {
		return
	}
	ks := p.keys[pr.key]
	want := min(len(pr.batch)+len(ks.queue), p.maxB)
	if want < 2 || len(ks.queue) >= want || len(ks.queue) > 0 && ks.queue[0].all {
		// Uncontended, enough waiting already, or the next batch is a
		// deletion-GC write, which goes alone anyway.
		return
	}
	p.holds++
	ks.hold, ks.holdSeq = want, p.holds
	p.ready.Timers = append(p.ready.Timers, Timer{Kind: TimerGather, Key: pr.key, Seq: p.holds})
}

// abandonUnknown ends a batch whose outcome cannot be known. Requests that
// could not have changed anything (reads that fell back) are queued again.
func (p *Proposer) abandonUnknown(pr *proposal) {
	ks := p.keys[pr.key]
	var again []*request
	for _, r := range pr.batch {
		if r.change == nil && !r.done {
			r.inBatch = false
			again = append(again, r)
			continue
		}
		p.answer(r, State{}, ErrUnknownOutcome)
	}
	ks.queue = append(again, ks.queue...)
	p.finish(pr)
}

// abandonExhausted ends pr when no ballot counter is left for its next
// attempt: what an earlier accept of the batch may have applied has an
// unknown outcome, the rest ErrExhausted (never sent, never applied).
func (p *Proposer) abandonExhausted(pr *proposal) {
	p.dropCache(pr.key)
	err := ErrExhausted
	if pr.changed() {
		err = ErrUnknownOutcome
	}
	for _, r := range pr.batch {
		p.answer(r, State{}, err)
	}
	p.finish(pr)
}

func (p *Proposer) finish(pr *proposal) {
	ks := p.keys[pr.key]
	ks.active = nil
	p.kick(pr.key, ks)
}

func (p *Proposer) takeCache(key string) *cacheEntry {
	el := p.cache[key]
	if el == nil {
		return nil
	}
	return p.removeCache(el)
}

// putCache keeps key's one-round-trip state, then drops the least recently
// used entries until the cache is within MaxCachedKeys and MaxCachedBytes.
// An entry larger than MaxCachedBytes by itself is not kept.
func (p *Proposer) putCache(key string, next Ballot, s State) {
	p.dropCache(key)
	e := &cacheEntry{key: key, next: next, state: s}
	if e.bytes() > p.maxCB {
		return
	}
	p.cache[key] = p.lru.PushFront(e)
	p.cacheB += e.bytes()
	for p.lru.Len() > p.maxC || p.cacheB > p.maxCB {
		p.removeCache(p.lru.Back())
	}
}

// DropCache forgets the one-round-trip state of key (deletion GC, §9 step 2).
func (p *Proposer) DropCache(key string) { p.dropCache(key) }

func (p *Proposer) dropCache(key string) {
	if el := p.cache[key]; el != nil {
		p.removeCache(el)
	}
}

// removeCache takes el's entry out of the cache and returns it.
func (p *Proposer) removeCache(el *list.Element) *cacheEntry {
	e := el.Value.(*cacheEntry)
	p.lru.Remove(el)
	delete(p.cache, e.key)
	p.cacheB -= e.bytes()
	return e
}

// nodeSet is a small set of node IDs; clusters are small enough that a
// linear scan beats a map.
type nodeSet []NodeID

func (s nodeSet) has(id NodeID) bool {
	for _, x := range s {
		if x == id {
			return true
		}
	}
	return false
}

func (s *nodeSet) add(id NodeID) {
	if !s.has(id) {
		*s = append(*s, id)
	}
}
