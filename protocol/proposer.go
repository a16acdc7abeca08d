package protocol

import (
	"container/list"
	"errors"
	"fmt"
)

// ReqID identifies one caller's request to a Proposer. The caller picks it;
// it must be unique among the requests not yet answered.
type ReqID uint64

// Result answers one request.
type Result struct {
	ID ReqID
	// State is the register after the request's change (for a refusal or a
	// read: the state the change was given).
	State State
	// Err is nil, the change's own refusal, ErrUnknownOutcome or ErrAborted.
	Err error
	// Ballot is the ballot State was accepted under, when Err is nil or a
	// refusal (zero for a register with no history).
	Ballot Ballot
	// Promise, for a request answered by an accept, is the promise that
	// accept left on the acceptors that took it. Deletion GC removes a
	// register only if its promise has not risen past it since (§9 step 4).
	Promise Ballot
}

var (
	// ErrUnknownOutcome: an accept carrying the change was sent and the
	// proposer cannot tell whether it was chosen; it may still take effect.
	// Retrying a non-idempotent change after it may apply it twice.
	ErrUnknownOutcome = errors.New("caspaxos/protocol: outcome unknown: the change may or may not take effect")
	// ErrAborted: the request was cancelled before any accept carrying its
	// change was sent; it was not applied and never will be.
	ErrAborted = errors.New("caspaxos/protocol: request abandoned before it was sent; not applied")
)

// TimerKind says what a Timer is for.
type TimerKind uint8

const (
	// TimerAttempt fires when an attempt has waited long enough for replies.
	TimerAttempt TimerKind = iota + 1
	// TimerBackoff fires when a failed attempt may be retried; Retry counts
	// the failures so far, for exponential backoff.
	TimerBackoff
	// TimerRead fires when a fast-path read has waited long enough for
	// every acceptor it asked (the read timeout).
	TimerRead
	// TimerWiden fires when a fast-path read sent to the nearest read
	// quorum first (its own acceptor and the nearest others) has waited
	// long enough for it (about a round trip to them): then it asks the
	// other acceptors too.
	TimerWiden
	// TimerGather fires when a contended key has held its next batch back
	// long enough (ProposerConfig.Gather): the batch then starts with the
	// changes that arrived. Its delay should be about one turnaround of a
	// caller (an answer out, the caller's next change in), well under a
	// round trip to the acceptors.
	TimerGather
)

// Timer asks the caller to call Proposer.Fire(t) after a delay of its
// choosing. Timers that fire late, or for an attempt that has since moved
// on, are ignored; none needs to be cancelled.
type Timer struct {
	Kind   TimerKind
	Key    string
	Ballot Ballot
	Retry  int
	// Seq tells apart the phases of one attempt, which share its ballot.
	Seq uint64
}

// Ready is what a Proposer asks its caller to do, in this order:
//  1. If Ceiling is not zero, persist it durably: no ballot counter above the
//     last persisted ceiling may leave the node, or a restart could reuse it.
//     If Age is not zero, persist it too (the proposer learnt a higher age
//     from an acceptor's fence; see Step), so that a restart does not meet
//     the same refusals again.
//  2. Send Messages (only after 1 is done).
//  3. Hand each Result to its caller.
//  4. Start Timers.
type Ready struct {
	Ceiling  uint64
	Age      uint64
	Messages []Message
	Results  []Result
	Timers   []Timer
}

// Empty reports whether there is nothing to do.
func (r Ready) Empty() bool {
	return r.Ceiling == 0 && r.Age == 0 && len(r.Messages) == 0 && len(r.Results) == 0 && len(r.Timers) == 0
}

// Bugs switches on deliberately broken behaviour, so that tests can show
// the simulator's checker catching each one. The zero value is correct
// behaviour; nothing outside tests may set a field.
type Bugs struct {
	// ReadQuorumShortBy lowers the read fast path's quorum by this much.
	ReadQuorumShortBy int
	// KeepCacheOnTimeout keeps the one-round-trip cache entry after an
	// accept timed out, so the next change reuses its ballot (PROTOCOL.md §5).
	KeepCacheOnTimeout bool
}

// ProposerConfig configures a Proposer.
type ProposerConfig struct {
	// ID is this proposer's node ID; it is part of every ballot.
	ID NodeID
	// Acceptors is the acceptor configuration to use.
	Acceptors Config
	// Ceiling is the last ceiling this ID persisted (Ready.Ceiling), 0 if none.
	Ceiling uint64
	// CeilingStep is how many ballot counters one persisted ceiling reserves
	// (default 1<<16): fewer syncs against fewer counters skipped on restart.
	CeilingStep uint64
	// MaxBatch bounds how many waiting changes of one key are composed into
	// one accept (default 256).
	MaxBatch int
	// MaxCachedKeys bounds the one-round-trip cache (default 1<<17 keys);
	// the least recently used entry is dropped first.
	MaxCachedKeys int
	// MaxCachedBytes bounds the same cache by size: its keys and values
	// and CacheEntryOverheadBytes per entry (default
	// DefaultMaxCachedBytes). The least recently used entries are dropped
	// to stay under it; an entry larger than the whole bound is not kept
	// (the key's next change then takes two round trips).
	MaxCachedBytes int64
	// Age is the proposer's age for the deletion GC's fence (PROTOCOL.md §9).
	Age uint64
	// Gather holds back the next batch of a contended key. When a batch of
	// a key succeeds and the key saw contention (the batch held more than
	// one change, or changes were waiting for it), the next batch waits
	// until as many changes are waiting as the finished batch and the
	// waiting ones together, or until a TimerGather fires, whichever comes
	// first. Callers that were just answered then join their next changes
	// to the others', and a key written by n callers at once commits them
	// in one round instead of alternating between two half-size batches,
	// one in flight while the other waits. A key written by one caller at
	// a time is never held.
	Gather bool
	// Bugs is for negative tests only.
	Bugs Bugs
}

// DefaultMaxCachedBytes is ProposerConfig.MaxCachedBytes's default.
const DefaultMaxCachedBytes = 64 << 20

// CacheEntryOverheadBytes is what one cache entry is counted to cost
// beyond its key and value (the entry, its list element, its map slot),
// so that many small entries count too.
const CacheEntryOverheadBytes = 128

// DefaultProposerConfig returns the defaults of ProposerConfig's bounds
// (the other fields are the caller's). A zero or negative bound given to
// NewProposer takes its value from here.
func DefaultProposerConfig() ProposerConfig {
	return ProposerConfig{
		CeilingStep:    1 << 16,
		MaxBatch:       256,
		MaxCachedKeys:  1 << 17,
		MaxCachedBytes: DefaultMaxCachedBytes,
	}
}

func (c *ProposerConfig) validate() error {
	if c.ID == 0 {
		return errors.New("caspaxos/protocol: proposer ID must not be 0")
	}
	if err := c.Acceptors.Validate(); err != nil {
		return err
	}
	def := DefaultProposerConfig()
	if c.CeilingStep == 0 {
		c.CeilingStep = def.CeilingStep
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = def.MaxBatch
	}
	if c.MaxCachedKeys <= 0 {
		c.MaxCachedKeys = def.MaxCachedKeys
	}
	if c.MaxCachedBytes <= 0 {
		c.MaxCachedBytes = def.MaxCachedBytes
	}
	return nil
}

// Proposer drives changes to registers through acceptors. It is a pure state
// machine: it never blocks, starts nothing and keeps no clock; inputs are the
// methods below, outputs are collected in Ready. It is not safe for
// concurrent use: the caller serializes all calls.
//
// Changes of one key are queued; while an attempt on a key is in flight, the
// changes that arrive wait, and the next attempt composes up to MaxBatch of
// them into one accept (each caller still gets its own result).
type Proposer struct {
	id      NodeID
	now     int64 // the driver's clock in milliseconds (SetNow): TimedChanges run at it
	cfg     Config
	age     uint64
	counter uint64 // highest ballot counter used or seen
	ceiling uint64 // highest counter persisted (or asked to be)
	step    uint64
	maxB    int
	maxC    int
	maxCB   int64
	gather  bool
	holds   uint64 // numbers the holds of Gather, for their timers
	bugs    Bugs

	keys   map[string]*keyState
	reqs   map[ReqID]*request
	reads  map[Ballot]*readOp
	tier   map[NodeID]int           // proximity tier of each acceptor (SetProximity)
	tiers  int                      // how many tiers SetProximity was given
	cache  map[string]*list.Element // of *cacheEntry
	lru    list.List                // front = most recently used
	cacheB int64                    // the cache's size, by cacheEntry.bytes
	ready  Ready
}

type request struct {
	id      ReqID
	key     string
	change  Change      // nil: identity (a read that left the fast path, or a GC write)
	timed   TimedChange // if set, change is rebuilt from it at each computation (ProposeTimed)
	all     bool        // a deletion-GC write (ProposeGC)
	force   bool        // an identity write that must reach the acceptors (Rewrite)
	inBatch bool
	done    bool
	read    *readOp // set while the request is on the read fast path
}

type keyState struct {
	active *proposal
	queue  []*request
	// hold, when not zero, is how many changes must be waiting before the
	// next batch starts (ProposerConfig.Gather); holdSeq names its timer.
	hold    int
	holdSeq uint64
}

// busy reports whether the key has changes in flight or waiting.
func (ks *keyState) busy() bool { return ks.active != nil || len(ks.queue) > 0 }

// cacheEntry is the one-round-trip state of a key (PROTOCOL.md §5): the
// ballot its acceptors promised with the last accept, and the state chosen
// by that accept.
type cacheEntry struct {
	key   string
	next  Ballot
	state State
}

// bytes is what the entry counts against MaxCachedBytes.
func (e *cacheEntry) bytes() int64 {
	return int64(len(e.key)+len(e.state.Value)) + CacheEntryOverheadBytes
}

// NewProposer returns a Proposer, or an error if cfg is invalid.
func NewProposer(cfg ProposerConfig) (*Proposer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Proposer{
		id:      cfg.ID,
		cfg:     cfg.Acceptors.Clone(),
		age:     cfg.Age,
		counter: cfg.Ceiling,
		ceiling: cfg.Ceiling,
		step:    cfg.CeilingStep,
		maxB:    cfg.MaxBatch,
		maxC:    cfg.MaxCachedKeys,
		maxCB:   cfg.MaxCachedBytes,
		gather:  cfg.Gather,
		bugs:    cfg.Bugs,
		keys:    make(map[string]*keyState),
		reqs:    make(map[ReqID]*request),
		reads:   make(map[Ballot]*readOp),
		cache:   make(map[string]*list.Element),
	}, nil
}

// Ready returns what the caller must do now and forgets it.
func (p *Proposer) Ready() Ready {
	r := p.ready
	p.ready = Ready{}
	return r
}

// Recycle gives back the slices of a Ready the caller has finished with (it
// keeps nothing of them), so that later Readys reuse them instead of
// allocating. Calling it is optional.
func (p *Proposer) Recycle(r Ready) {
	if p.ready.Messages == nil {
		clear(r.Messages)
		p.ready.Messages = r.Messages[:0]
	}
	if p.ready.Results == nil {
		clear(r.Results)
		p.ready.Results = r.Results[:0]
	}
	if p.ready.Timers == nil {
		clear(r.Timers)
		p.ready.Timers = r.Timers[:0]
	}
}

// Propose asks for change to be applied to key. Its Result comes in a later
// Ready. It panics if id is already pending (a caller's bug).
func (p *Proposer) Propose(id ReqID, key string, change Change) {
	if change == nil {
		panic("caspaxos/protocol: Propose with a nil change")
	}
	p.enqueue(p.newRequest(id, key, change))
}

// TimedChange is a change that depends on the time it runs at, in
// milliseconds of the driver's clock: exactly-once's window check
// (kv.Idempotent) refuses a request issued longer ago than the window.
type TimedChange func(nowMillis int64) Change

// ProposeTimed is Propose for a change built from the time: each time the
// batch is computed (each attempt: after a prepare quorum, or from a cached
// promise) the change is built at the time of the driver's latest SetNow,
// not at the time it was proposed. A change fixed at its proposal could
// run, retried after conflicts and timeouts, long after deletion GC removed
// the key's tombstone and the request table in it, judging its request
// still inside the window (its time being older than GC's decision), and
// so apply the request a second time. Built per attempt, an attempt that
// computes after GC decided judges at a time past GC's (less the clock skew
// bound, which GC's hold adds), and refuses it as expired; one that
// computed before is ended by GC's step 2 (PROTOCOL.md §9).
func (p *Proposer) ProposeTimed(id ReqID, key string, change TimedChange) {
	if change == nil {
		panic("caspaxos/protocol: ProposeTimed with a nil change")
	}
	r := p.newRequest(id, key, change(p.now))
	r.timed = change
	p.enqueue(r)
}

// SetNow gives the proposer the driver's clock, in milliseconds: a driver
// calls it before it hands the proposer an input (Propose, Step, Fire),
// and TimedChanges computed while that input is handled run at it. It
// never goes back: an earlier time is ignored.
func (p *Proposer) SetNow(nowMillis int64) {
	p.now = max(p.now, nowMillis)
}

func (p *Proposer) newRequest(id ReqID, key string, change Change) *request {
	if _, dup := p.reqs[id]; dup {
		panic(fmt.Sprintf("caspaxos/protocol: request %d is already pending", id))
	}
	r := &request{id: id, key: key, change: change}
	p.reqs[id] = r
	return r
}

func (p *Proposer) enqueue(r *request) {
	ks := p.keys[r.key]
	if ks == nil {
		ks = &keyState{}
		p.keys[r.key] = ks
	}
	ks.queue = append(ks.queue, r)
	p.kick(r.key, ks)
}

// Cancel gives up on a request (its caller's deadline passed). Its Result
// comes in the next Ready: ErrAborted if no accept carrying it was sent,
// ErrUnknownOutcome if one was. Cancelling an unknown or answered ID does
// nothing.
func (p *Proposer) Cancel(id ReqID) {
	r := p.reqs[id]
	if r == nil {
		return
	}
	if rd := r.read; rd != nil {
		delete(p.reads, rd.ballot)
		p.answer(r, State{}, ErrAborted)
		return
	}
	ks := p.keys[r.key]
	if !r.inBatch {
		for i, q := range ks.queue {
			if q == r {
				ks.queue = append(ks.queue[:i], ks.queue[i+1:]...)
				break
			}
		}
		p.answer(r, State{}, ErrAborted)
		p.gcKey(r.key, ks)
		return
	}
	p.cancelInBatch(r, ks)
}

func (p *Proposer) cancelInBatch(r *request, ks *keyState) {
	pr := ks.active
	if r.change != nil && pr.changed() {
		p.answer(r, State{}, ErrUnknownOutcome)
	} else {
		p.answer(r, State{}, ErrAborted)
	}
	for _, q := range pr.batch {
		if !q.done {
			return
		}
	}
	// Nobody waits for this attempt any more: abandon it. Its cache entry,
	// if it came from one, was consumed when the attempt started.
	p.dropCache(r.key)
	ks.active = nil
	p.kick(r.key, ks)
}

func (p *Proposer) answer(r *request, s State, err error) {
	p.answerAt(r, Result{State: s, Err: err})
}

func (p *Proposer) answerAt(r *request, res Result) {
	if r.done {
		return
	}
	r.done = true
	delete(p.reqs, r.id)
	res.ID = r.id
	p.ready.Results = append(p.ready.Results, res)
}

// Step hands the Proposer a reply from an acceptor. Replies it does not
// expect (late, duplicated, from unknown nodes) are ignored.
func (p *Proposer) Step(m Message) {
	if m.Kind == MsgConflict {
		p.observe(m.Seen)
		p.learnFence(m.Age)
	}
	if rd := p.reads[m.Ballot]; rd != nil && m.Kind == MsgReadReply && rd.key == m.Key {
		p.stepRead(rd, m)
		return
	}
	ks := p.keys[m.Key]
	if ks == nil || ks.active == nil {
		return
	}
	pr := ks.active
	if m.Kind == MsgConflict {
		pr.noteRefusal(m)
	}
	if pr.ballot != m.Ballot {
		return
	}
	switch m.Kind {
	case MsgPromise:
		p.stepPromise(pr, m)
	case MsgAccepted:
		p.stepAccepted(pr, m)
	case MsgConflict:
		p.stepConflict(pr, m)
	}
}

// Fire tells the Proposer that a Timer from an earlier Ready went off.
func (p *Proposer) Fire(t Timer) {
	if t.Kind == TimerGather {
		if ks := p.keys[t.Key]; ks != nil && ks.hold > 0 && ks.holdSeq == t.Seq {
			ks.hold = 0
			p.kick(t.Key, ks)
		}
		return
	}
	if t.Kind == TimerRead || t.Kind == TimerWiden {
		if rd := p.reads[t.Ballot]; rd != nil && rd.key == t.Key {
			p.fireRead(rd, t)
			return
		}
	}
	ks := p.keys[t.Key]
	if ks == nil || ks.active == nil || ks.active.ballot != t.Ballot || ks.active.seq != t.Seq {
		return
	}
	pr := ks.active
	switch {
	case t.Kind == TimerAttempt && (pr.phase == phasePrepare || pr.phase == phaseAccept):
		p.fail(pr, true)
	case t.Kind == TimerBackoff && pr.phase == phaseBackoff:
		p.startPrepare(pr)
	}
}

// observe fast-forwards the ballot counter past a ballot seen in a conflict
// (PROTOCOL.md §2), so that the next attempt outbids it.
//
// A ballot above MaxCounter was never used by any proposer (newBallot stops
// there): it is bad input, and following it would exhaust this proposer's
// counters for every key, so it is ignored; the key's attempt fails and
// retries until its caller gives up.
func (p *Proposer) observe(b Ballot) {
	if b.Counter <= MaxCounter {
		p.counter = max(p.counter, b.Counter)
	}
}

// learnFence raises the age to fence, the age an acceptor's fence refusal
// (Fenced) asked for, if it is higher; the next Ready asks to persist it.
// A fence above MaxAge is bad input and ignored.
//
// Why this keeps deletion GC safe (PROTOCOL.md §9). The fence protects
// against messages of this proposer created before its step 2 (Forget) of
// a round: a message carries the age it was created with (a pinned attempt
// keeps its older age), ages only rise, and a round's fence is the age this
// proposer answered from Forget, after persisting it. So every message
// created before that Forget carries an age below the fence, whatever
// raises the age later: learning a fence changes only messages created
// after it, and lets no old one through. Learning drops no cache entry and
// moves no counter, which step 2 does for the keys being collected; it is
// not a step 2 and does not need to be: a round fences with the ages its
// Forgets answered, never with a learnt one. Honest fences never exceed the
// age this proposer persisted; a higher one came from elsewhere (a bad
// GC.Fence call, a copy of fences), and without learning it every write of
// this proposer would be refused for good, restarts included. Acceptors
// refuse fences far above what they have seen of a proposer (server's
// Acceptor.Fence), so learning cannot push the age to MaxAge in one step.
func (p *Proposer) learnFence(fence uint64) {
	if fence > p.age && fence <= MaxAge {
		p.age = fence
		p.ready.Age = fence
	}
}

// FastForward moves the ballot counter to at least counter (deletion GC,
// PROTOCOL.md §9). The move must survive a restart, so if it passes the
// persisted ceiling, the next Ready asks for a new ceiling past it. A
// counter above MaxCounter is refused with ErrExhausted and changes nothing.
func (p *Proposer) FastForward(counter uint64) error {
	if counter > MaxCounter {
		return fmt.Errorf("%w: fast-forward to counter %d, past %d", ErrExhausted, counter, MaxCounter)
	}
	p.counter = max(p.counter, counter)
	p.reserve()
	return nil
}

// reserve asks for a new persisted ceiling if the counter passed the last
// one: CeilingStep counters ahead, never past MaxCounter.
func (p *Proposer) reserve() {
	if p.counter > p.ceiling {
		p.ceiling = addCapped(p.counter, p.step-1, MaxCounter)
		p.ready.Ceiling = p.ceiling
	}
}

// SetAge raises the age carried by every later message to age, if it is
// higher (a restart restores the persisted age with it); never past MaxAge.
func (p *Proposer) SetAge(age uint64) { p.age = max(p.age, min(age, MaxAge)) }

// Age returns the proposer's age.
func (p *Proposer) Age() uint64 { return p.age }

// SetConfig replaces the acceptor configuration (PROTOCOL.md §8). It refuses
// a configuration whose Version is not higher than the current one, and an
// invalid one. New attempts use it at once; attempts in flight finish with
// the configuration they began with (see Settled). The one-round-trip cache
// is dropped: its promises were gathered from the old prepare quorums.
func (p *Proposer) SetConfig(c Config) error {
	if c.Version <= p.cfg.Version {
		return fmt.Errorf("caspaxos/protocol: configuration version %d is not newer than %d", c.Version, p.cfg.Version)
	}
	if err := c.Validate(); err != nil {
		return err
	}
	p.cfg = c.Clone()
	p.cache = make(map[string]*list.Element)
	p.lru.Init()
	p.cacheB = 0
	return nil
}

// Settled reports whether no attempt in flight still uses a configuration
// older than version. A membership step is done on this proposer once
// SetConfig took the new configuration and Settled reports true: attempts
// time out, so it does within the attempt timeout.
func (p *Proposer) Settled(version uint64) bool {
	for _, ks := range p.keys {
		if pr := ks.active; pr != nil && pr.phase != phaseBackoff && pr.cfg.Version < version {
			return false
		}
	}
	for _, rd := range p.reads {
		if rd.cfg.Version < version {
			return false
		}
	}
	return true
}

// ProposeGC runs the identity change x -> x on key with an accept quorum of
// every acceptor of the accept set, alone in its batch and never skipping
// the accept (deletion GC, PROTOCOL.md §9 step 1). Its Result carries the
// state found, the ballot it was accepted under on every acceptor, and the
// promise it left there. Step 4 may remove an acceptor's register only if
// it still holds that state under that ballot and its promise has not risen
// past that promise: a higher promise went to a proposer that has read the
// tombstone and may yet accept on top of it, and removing the promise would
// let a lower ballot be accepted underneath, by a quorum that never saw it.
func (p *Proposer) ProposeGC(id ReqID, key string) {
	r := p.newRequest(id, key, nil)
	r.all = true
	p.enqueue(r)
}

// Rewrite runs the identity change x -> x on key and always sends its
// accept, even when the promises already agree on a chosen state: the
// membership catch-up (PROTOCOL.md §8 step 3), which must leave every key's
// state on an accept quorum of the new accept set.
func (p *Proposer) Rewrite(id ReqID, key string) {
	r := p.newRequest(id, key, nil)
	r.force = true
	p.enqueue(r)
}

// Forget is deletion GC's step 2 on this proposer (PROTOCOL.md §9) for key,
// whose tombstone of the given version was accepted under b everywhere: it
// drops the key's one-round-trip state, moves the ballot counter past b and
// past version (the next write of the key, finding no register, takes the
// counter as its first version; composition lets versions outrun ballot
// counters, so passing b alone is not enough), and raises the age by one. It returns
// the new age, which the caller must persist, with the Ready's ceiling,
// before reporting the step done. An attempt in flight on key keeps the old age and so is fenced by
// the acceptors from step 3 on; if it may already have changed the state,
// its requests answer ErrUnknownOutcome now, since the register that would
// have shown what became of them is about to be removed.
//
// A ballot or version past MaxCounter, or an age already at MaxAge, is
// refused with ErrExhausted and changes nothing: the GC round fails, and no
// fence or removal follows it.
func (p *Proposer) Forget(key string, b Ballot, version uint64) (uint64, error) {
	if p.age >= MaxAge {
		return p.age, fmt.Errorf("%w: the proposer's age is %d", ErrExhausted, p.age)
	}
	if err := p.FastForward(max(b.Counter, version)); err != nil {
		return p.age, err
	}
	p.dropCache(key)
	old := p.age
	p.age++
	if ks := p.keys[key]; ks != nil && ks.active != nil {
		pr := ks.active
		if !pr.all && pr.changed() {
			p.abandonUnknown(pr)
		} else if !pr.pinned {
			pr.pinned, pr.pinAge = true, old
		}
	}
	return p.age, nil
}

// Config returns the acceptor configuration in use.
func (p *Proposer) Config() Config { return p.cfg.Clone() }

// newBallot returns a ballot no attempt has used, reserving a new ceiling
// when the counter passes the persisted one; false once the counter reached
// MaxCounter (it never wraps to reuse a counter).
func (p *Proposer) newBallot() (Ballot, bool) {
	if p.counter >= MaxCounter {
		return Ballot{}, false
	}
	p.counter++
	p.reserve()
	return Ballot{Counter: p.counter, Proposer: p.id}, true
}

func (p *Proposer) send(kind Kind, to []NodeID, m Message) {
	m.Kind = kind
	m.From = p.id
	m.Age = p.age
	for _, id := range to {
		m.To = id
		p.ready.Messages = append(p.ready.Messages, m)
	}
}

func (p *Proposer) timer(kind TimerKind, key string, b Ballot, retry int) {
	p.ready.Timers = append(p.ready.Timers, Timer{Kind: kind, Key: key, Ballot: b, Retry: retry})
}
