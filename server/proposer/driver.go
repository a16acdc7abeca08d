package proposer

import (
	"errors"
	"log/slog"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// ready accumulates the protocol.Ready of every input the driver took since
// it last acted on them. Acting once for many inputs composes changes that
// arrived together and sends one batch per destination.
type ready struct {
	ceiling  uint64
	age      uint64 // deletion GC's age to persist; 0: unchanged
	forgets  []*forgetCall
	messages []protocol.Message
	results  []protocol.Result
	timers   []protocol.Timer
}

// run is the driver's goroutine: the only one that touches p.core.
func (p *Proposer) run() {
	defer close(p.done)
	clock := time.NewTimer(time.Hour)
	clock.Stop()
	var armed time.Time // when clock fires; zero if it is not set
	var due []protocol.Timer
	for {
		select {
		case <-p.stop:
			p.shutdown()
			return
		case c := <-p.submit:
			p.start(c)
		case msgs := <-p.replies:
			p.step(msgs)
		case id := <-p.cancel:
			p.tick()
			p.core.Cancel(id)
			p.collect()
		case fc := <-p.forgets:
			p.forget(fc)
		case fn := <-p.admin:
			fn(p.core)
			p.collect()
		case <-clock.C:
			armed = time.Time{}
		}
		p.drain()
		now := time.Now()
		due = p.timers.popDue(now, due[:0])
		if len(due) > 0 {
			p.tick()
		}
		for _, t := range due {
			p.core.Fire(t)
			p.collect()
		}
		if err := p.flush(now); err != nil {
			p.log.Error("proposer stopped", slog.Uint64("node_id", uint64(p.cfg.ID)), slog.Any("error", err))
			p.shutdown()
			return
		}
		if at, ok := p.timers.next(); ok && !at.Equal(armed) {
			clock.Reset(at.Sub(now))
			armed = at
		}
	}
}

// drain takes the inputs already waiting, up to maxDrain, without blocking.
func (p *Proposer) drain() {
	for range maxDrain {
		select {
		case c := <-p.submit:
			p.start(c)
		case msgs := <-p.replies:
			p.step(msgs)
		case id := <-p.cancel:
			p.tick()
			p.core.Cancel(id)
			p.collect()
		case fc := <-p.forgets:
			p.forget(fc)
		default:
			return
		}
	}
}

// tick gives the core the time before an input: the exactly-once writes
// it computes while handling that input run at it (ProposeTimed).
func (p *Proposer) tick() { p.core.SetNow(p.cfg.Now().UnixMilli()) }

func (p *Proposer) start(c *call) {
	p.tick()
	p.calls[c.id] = c
	p.stats.requests.Add(1)
	switch {
	case c.gc:
		p.core.ProposeGC(c.id, c.key)
	case c.force:
		p.core.Rewrite(c.id, c.key)
	case c.fast:
		p.core.FastRead(c.id, c.key)
	case c.change == nil:
		p.core.Read(c.id, c.key)
	default:
		if c.timed != nil {
			p.core.ProposeTimed(c.id, c.key, c.timed)
		} else {
			p.core.Propose(c.id, c.key, c.change)
		}
	}
	p.collect()
}

func (p *Proposer) step(msgs []protocol.Message) {
	p.tick()
	for _, m := range msgs {
		if m.Kind == protocol.MsgConflict {
			p.stats.conflicts.Add(1)
		}
		p.core.Step(m)
		p.collect()
	}
}

// collect moves the core's Ready into p.acc. It runs after every single
// input so that the results of one Ready are those of one event, which is
// what lets count tell composed batches apart.
func (p *Proposer) collect() {
	rd := p.core.Ready()
	defer p.core.Recycle(rd) // everything is copied below
	if rd.Empty() {
		return
	}
	p.count(rd)
	p.acc.ceiling = max(p.acc.ceiling, rd.Ceiling)
	p.acc.age = max(p.acc.age, rd.Age)
	p.acc.messages = append(p.acc.messages, rd.Messages...)
	p.acc.results = append(p.acc.results, rd.Results...)
	p.acc.timers = append(p.acc.timers, rd.Timers...)
}

// flush does what the accumulated Ready asks, in the order protocol.Ready
// requires: persist the ceiling (and the age, which Forget raised or a
// fence refusal taught), send,
// answer, start timers.
func (p *Proposer) flush(now time.Time) error {
	if p.acc.ceiling != 0 {
		if err := p.ceil.SetCeiling(p.acc.ceiling); err != nil {
			return errors.Join(errors.New("caspaxos/proposer: persisting the ballot ceiling failed; nothing more may be sent"), err)
		}
		p.acc.ceiling = 0
	}
	if p.acc.age != 0 {
		if err := p.ceil.SetAge(p.acc.age); err != nil {
			return errors.Join(errors.New("caspaxos/proposer: persisting the proposer's age failed; nothing more may be sent"), err)
		}
		p.acc.age = 0
	}
	p.send(p.acc.messages)
	clear(p.acc.messages)
	p.acc.messages = p.acc.messages[:0]
	p.answer()
	p.answerForgets()
	for _, t := range p.acc.timers {
		p.timers.add(now.Add(p.delay(t, now)), t)
	}
	clear(p.acc.timers)
	p.acc.timers = p.acc.timers[:0]
	return nil
}

// send groups msgs by destination and hands each group to the transport,
// which may keep the group: each is a slice of its own, allocated once at
// its final size. msgs itself is not kept.
func (p *Proposer) send(msgs []protocol.Message) {
	type group struct {
		to   protocol.NodeID
		msgs []protocol.Message
	}
	var buf [8]group
	groups := buf[:0]
	find := func(to protocol.NodeID) int {
		for i := range groups {
			if groups[i].to == to {
				return i
			}
		}
		return -1
	}
	var sizes [8]int
	counts := sizes[:0]
	for _, m := range msgs {
		i := find(m.To)
		if i < 0 {
			groups = append(groups, group{to: m.To})
			counts = append(counts, 0)
			i = len(groups) - 1
		}
		counts[i]++
	}
	for i := range groups {
		groups[i].msgs = make([]protocol.Message, 0, counts[i])
	}
	for _, m := range msgs {
		i := find(m.To)
		groups[i].msgs = append(groups[i].msgs, m)
	}
	for _, g := range groups {
		if err := p.tr.Send(g.to, g.msgs); err != nil {
			p.log.Debug("proposer could not send", slog.Uint64("to", uint64(g.to)), slog.Any("error", err))
		}
	}
}

// answer hands each accumulated result to its caller.
func (p *Proposer) answer() {
	for _, r := range p.acc.results {
		if c := p.calls[r.ID]; c != nil {
			delete(p.calls, r.ID)
			c.result <- r // buffered for exactly this one result
		}
	}
	clear(p.acc.results)
	p.acc.results = p.acc.results[:0]
}

func (p *Proposer) delay(t protocol.Timer, now time.Time) time.Duration {
	switch t.Kind {
	case protocol.TimerAttempt:
		return p.stretch(p.cfg.AttemptTimeout, false, now)
	case protocol.TimerRead:
		return p.stretch(p.cfg.ReadTimeout, true, now)
	case protocol.TimerWiden:
		return p.stretch(p.cfg.ReadNearTimeout, true, now)
	case protocol.TimerGather:
		return p.cfg.GatherWindow
	default:
		return p.retryDelay(t.Retry, now)
	}
}

// shutdown answers every request the driver holds without sending anything
// more: results already known are delivered, the rest are cancelled (the
// core says whether an accept carrying each was sent), and requests still
// queued are answered as never taken.
func (p *Proposer) shutdown() {
	p.acc.messages, p.acc.timers, p.acc.ceiling = nil, nil, 0
	p.acc.age, p.acc.forgets = 0, nil // unpersisted: their callers see server.ErrStopped
	p.answer()
	for id := range p.calls {
		p.core.Cancel(id)
		p.collect()
	}
	p.acc.messages, p.acc.timers, p.acc.ceiling = nil, nil, 0
	p.answer()
	for {
		select {
		case c := <-p.submit:
			c.result <- protocol.Result{ID: c.id, Err: protocol.ErrAborted}
		default:
			return
		}
	}
}

// ComposedBuckets is the number of buckets of Stats.Composed.
const ComposedBuckets = 9

// Stats counts a proposer's work since it started.
type Stats struct {
	// Requests is the number of changes and reads taken.
	Requests uint64
	// PrepareRounds and AcceptRounds count phase-1 and phase-2 broadcasts.
	PrepareRounds uint64
	AcceptRounds  uint64
	// OneRoundTrip counts the accept rounds sent straight from the
	// one-round-trip cache, with no prepare (PROTOCOL.md §5).
	OneRoundTrip uint64
	// ReadRounds counts fast-path read broadcasts (PROTOCOL.md §6).
	ReadRounds uint64
	// Conflicts counts conflict replies received.
	Conflicts uint64
	// Aborted and UnknownOutcomes count requests answered with
	// protocol.ErrAborted and protocol.ErrUnknownOutcome.
	Aborted         uint64
	UnknownOutcomes uint64
	// ComposedBatches counts the batches of changes the core composed and
	// answered together (one accept, or none when the state was already
	// chosen), ComposedChanges the changes in them, and Composed[i] the
	// batches of 2^i to 2^(i+1)-1 changes (the last bucket: that many or
	// more). Reads are not counted.
	ComposedBatches uint64
	ComposedChanges uint64
	// DroppedReplies counts replies dropped because the driver's queue was
	// full (overload; the attempts they answered time out and retry).
	DroppedReplies uint64
	Composed       [ComposedBuckets]uint64
}

type counters struct {
	requests, prepareRounds, acceptRounds, oneRoundTrip, readRounds atomic.Uint64
	conflicts, aborted, unknown, batches, changes                   atomic.Uint64
	droppedReplies                                                  atomic.Uint64
	composed                                                        [ComposedBuckets]atomic.Uint64
	// prepared maps a key to the ballot of its last prepare round, until
	// the accept of that ballot is sent or the key's batch is answered
	// (run goroutine only).
	prepared map[string]protocol.Ballot
}

// Stats returns the proposer's counters.
func (p *Proposer) Stats() Stats {
	s := &p.stats
	out := Stats{
		Requests:        s.requests.Load(),
		PrepareRounds:   s.prepareRounds.Load(),
		AcceptRounds:    s.acceptRounds.Load(),
		OneRoundTrip:    s.oneRoundTrip.Load(),
		ReadRounds:      s.readRounds.Load(),
		Conflicts:       s.conflicts.Load(),
		Aborted:         s.aborted.Load(),
		UnknownOutcomes: s.unknown.Load(),
		ComposedBatches: s.batches.Load(),
		ComposedChanges: s.changes.Load(),
		DroppedReplies:  s.droppedReplies.Load(),
	}
	for i := range out.Composed {
		out.Composed[i] = s.composed[i].Load()
	}
	return out
}

// count updates the counters from one event's Ready. Results come first: a
// result ends its key's batch, and a prepare of that key in the same Ready
// belongs to the next batch.
func (p *Proposer) count(rd protocol.Ready) {
	s := &p.stats
	run, runKey := 0, ""
	for _, r := range rd.Results {
		c := p.calls[r.ID]
		switch {
		case errors.Is(r.Err, protocol.ErrAborted):
			s.aborted.Add(1)
		case errors.Is(r.Err, protocol.ErrUnknownOutcome):
			s.unknown.Add(1)
		case c == nil || c.change == nil:
		case run > 0 && c.key == runKey:
			run++
		default:
			s.addBatch(run)
			delete(s.prepared, c.key)
			run, runKey = 1, c.key
		}
	}
	s.addBatch(run)
	p.countRounds(rd.Messages)
}

func (s *counters) addBatch(n int) {
	if n == 0 {
		return
	}
	s.batches.Add(1)
	s.changes.Add(uint64(n))
	s.composed[min(bits.Len(uint(n))-1, ComposedBuckets-1)].Add(1)
}

// countRounds counts broadcasts: the messages of one round are adjacent and
// share kind, key and ballot.
func (p *Proposer) countRounds(msgs []protocol.Message) {
	s := &p.stats
	if s.prepared == nil || len(s.prepared) > len(p.calls)+1024 {
		// Batches abandoned between prepare and accept leave entries;
		// forgetting them all now and then costs a few misclassified
		// accepts, never memory.
		s.prepared = make(map[string]protocol.Ballot)
	}
	for i, m := range msgs {
		if i > 0 && m.Kind == msgs[i-1].Kind && m.Ballot == msgs[i-1].Ballot && m.Key == msgs[i-1].Key {
			continue
		}
		switch m.Kind {
		case protocol.MsgPrepare:
			s.prepareRounds.Add(1)
			s.prepared[m.Key] = m.Ballot
		case protocol.MsgAccept:
			s.acceptRounds.Add(1)
			if b, ok := s.prepared[m.Key]; ok && b == m.Ballot {
				delete(s.prepared, m.Key)
			} else {
				s.oneRoundTrip.Add(1)
			}
		case protocol.MsgRead:
			s.readRounds.Add(1)
		}
	}
}
