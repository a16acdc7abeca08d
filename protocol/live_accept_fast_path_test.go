package protocol

import (
	"errors"
	"testing"
)

// TestRefusalAfterLiveAcceptIsCommitted: a batch whose earlier accept one
// acceptor took (a live accept) must not answer through the no-accept fast
// path (§4, §6) on a retry, even when the retry's prepare quorum agrees on
// a chosen state below that accept. The acceptor that took the accept still
// holds it, and a later prepare whose quorum includes it builds on it; only
// a higher ballot accepted by a quorum puts it out of reach. Found by
// internal/sim (seed 1000015): after a cancelled change left its batch, the
// retry recomputed the rest as a refusal and answered it, and the old
// accept, in which that change had succeeded, was chosen later.
func TestRefusalAfterLiveAcceptIsCommitted(t *testing.T) {
	regs := make(map[NodeID]Register)
	acceptor := func(m Message) Message {
		next, reply, _ := Step(regs[m.To], m)
		regs[m.To] = next
		return reply
	}
	proposer := func(id NodeID, ceiling uint64) *Proposer {
		p, err := NewProposer(ProposerConfig{ID: id, Acceptors: Majority(1, 1, 2, 3), Ceiling: ceiling})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// deliver hands p's messages to the acceptors in to, and their replies to p.
	deliver := func(p *Proposer, msgs []Message, to ...NodeID) {
		for _, m := range msgs {
			for _, id := range to {
				if m.To == id {
					p.Step(acceptor(m))
				}
			}
		}
	}
	// collect takes p's Ready, keeping its results and timers.
	results := make(map[ReqID]Result)
	var timers []Timer
	collect := func(p *Proposer) []Message {
		rd := p.Ready()
		for _, r := range rd.Results {
			results[r.ID] = r
		}
		timers = append(timers, rd.Timers...)
		return rd.Messages
	}
	setX := func(State) (Write, error) { return Write{Kind: WriteSet, Value: []byte("x")}, nil }
	// ifX writes y over x and refuses anything else.
	ifX := func(cur State) (Write, error) {
		if string(cur.Value) != "x" {
			return Write{}, errRefusedY
		}
		return Write{Kind: WriteSet, Value: []byte("y")}, nil
	}
	p1, p2, p3 := proposer(1, 0), proposer(2, 100), proposer(3, 1000)

	// p1 writes a; setX and ifX wait behind it and go as one batch, from
	// the cache, in one accept: a -> x -> y.
	p1.Propose(1, "k", set("a"))
	p1.Propose(2, "k", setX)
	p1.Propose(3, "k", ifX)
	deliver(p1, collect(p1), 1, 2, 3)
	deliver(p1, collect(p1), 1, 2, 3)
	batch := collect(p1)
	// p2 outbids on acceptors 1 and 2, which then refuse the batch's
	// accept; acceptor 3 takes it.
	p2.Propose(10, "k", set("z"))
	deliver(p2, p2.Ready().Messages, 1, 2)
	deliver(p1, batch, 1, 2, 3)
	if string(regs[3].State.Value) != "y" {
		t.Fatalf("acceptor 3 holds %v, want y", regs[3].State)
	}
	// setX's caller gives up; the retry recomputes ifX alone on a: a refusal.
	p1.Cancel(2)
	collect(p1)
	for _, tm := range timers {
		if tm.Kind == TimerBackoff {
			p1.Fire(tm)
		}
	}
	deliver(p1, collect(p1), 1, 2)
	deliver(p1, collect(p1), 1, 2)
	collect(p1)
	if r := results[3]; !errors.Is(r.Err, errRefusedY) {
		t.Fatalf("request 3 answered %+v, want its refusal", r)
	}
	// A later proposer whose prepare quorum includes acceptor 3 must not
	// find y, in which the refused change succeeded.
	p3.Propose(20, "k", func(State) (Write, error) { return Write{}, nil })
	deliver(p3, p3.Ready().Messages, 3, 1)
	deliver(p3, p3.Ready().Messages, 3, 1)
	rd := p3.Ready()
	if len(rd.Results) != 1 || string(rd.Results[0].State.Value) == "y" {
		t.Fatalf("request 3 was refused, yet a later proposer finds %+v", rd.Results)
	}
}

var errRefusedY = errors.New("not x")
