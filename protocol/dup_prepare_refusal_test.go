package protocol

import (
	"slices"
	"testing"
)

// TestConflictAnsweringDuplicatePrepareRefusesNoAccept: an acceptor that
// promised ballot B answers a duplicate of the prepare for B with a
// Conflict showing Seen == B. That Conflict carries the same Ballot as the
// accept sent under B, but it does not refuse that accept: the acceptor
// may still accept it. Counted as a refusal, it let a batch whose accept
// one acceptor took be judged "accepted nowhere" once the others refused,
// and the retry then applied the batch a second time on top of its own
// first application (found by internal/sim, seed 2: one Increment(-3)
// applied twice).
func TestConflictAnsweringDuplicatePrepareRefusesNoAccept(t *testing.T) {
	regs := make(map[NodeID]Register)
	acceptor := func(m Message) Message {
		next, reply, _ := Step(regs[m.To], m)
		regs[m.To] = next
		return reply
	}
	proposer := func(id NodeID) *Proposer {
		p, err := NewProposer(ProposerConfig{ID: id, Acceptors: Majority(1, 1, 2, 3)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	appendX := func(cur State) (Write, error) {
		return Write{Kind: WriteSet, Value: append(slices.Clone(cur.Value), 'x')}, nil
	}
	p1, p2 := proposer(1), proposer(2)

	p1.Propose(1, "k", appendX)
	prepares := p1.Ready().Messages
	var promises []Message
	for _, m := range prepares {
		promises = append(promises, acceptor(m))
	}
	// Proposer 2 outbids on acceptors 1 and 2 before proposer 1's accepts arrive.
	p2.Propose(2, "k", appendX)
	for _, m := range p2.Ready().Messages {
		if m.To != 3 {
			acceptor(m)
		}
	}
	for _, m := range promises {
		p1.Step(m)
	}
	accepts := p1.Ready().Messages
	// A duplicate of the first prepare reaches acceptor 3 before the accept.
	if dup := acceptor(prepares[2]); dup.Kind != MsgConflict || dup.Seen != dup.Ballot {
		t.Fatalf("duplicate prepare answered with %v, want a Conflict showing its own ballot", dup)
	} else {
		p1.Step(dup)
	}
	// Acceptors 1 and 2 refuse the accept; acceptor 3 accepts it.
	for _, m := range accepts {
		p1.Step(acceptor(m))
	}
	if got := regs[3].State; string(got.Value) != "x" {
		t.Fatalf("acceptor 3 holds %v, want x", got)
	}
	rd := p1.Ready()
	if len(rd.Timers) != 1 || rd.Timers[0].Kind != TimerBackoff {
		t.Fatalf("timers %+v, want one backoff", rd.Timers)
	}
	// The retry's prepare quorum (3 first) shows acceptor 3's accept as the
	// highest: that is this batch, to be committed again, not applied again.
	p1.Fire(rd.Timers[0])
	retry := p1.Ready().Messages
	for _, to := range []NodeID{3, 1, 2} {
		p1.Step(acceptor(retry[slices.IndexFunc(retry, func(m Message) bool { return m.To == to })]))
	}
	for _, m := range p1.Ready().Messages {
		p1.Step(acceptor(m))
	}
	results := p1.Ready().Results
	if len(results) != 1 || results[0].Err != nil || string(results[0].State.Value) != "x" {
		t.Fatalf("results %+v, want the change applied once (x)", results)
	}
	for id := NodeID(1); id <= 3; id++ {
		if string(regs[id].State.Value) == "xx" {
			t.Fatalf("acceptor %d holds %v: the change was applied twice", id, regs[id].State)
		}
	}
}
