package protocol

import (
	"errors"
	"testing"
)

func TestComposedIncrementsOneAccept(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	for i := ReqID(1); i <= 10; i++ {
		p.Propose(i, "k", incr(1))
	}
	c.run()
	for i := ReqID(1); i <= 10; i++ {
		r := c.results[i]
		if r.Err != nil {
			t.Fatalf("request %d: %v", i, r.Err)
		}
	}
	// The first change went alone; the nine that waited went in one batch.
	if got := string(c.results[10].State.Value); got != "10" {
		t.Fatalf("final value %q, want 10", got)
	}
	if got := c.results[10].State.Version - c.results[1].State.Version; got != 9 {
		t.Fatalf("versions rose by %d over 10 changes, want 9", got)
	}
}

func TestOneRoundTripAfterFirstChange(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("a"))
	c.run()
	var prepares int
	c.drop = func(m Message) bool {
		if m.Kind == MsgPrepare {
			prepares++
		}
		return false
	}
	p.Propose(2, "k", set("b"))
	c.run()
	if prepares != 0 {
		t.Fatalf("second change sent %d prepares, want 0", prepares)
	}
	if r := c.results[2]; r.Err != nil || string(r.State.Value) != "b" {
		t.Fatalf("result %+v", r)
	}
}

func TestRefusalCommitsStateFirst(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	c.proposers[1].Propose(1, "k", set("a"))
	c.run()
	c.proposers[2].Propose(2, "k", refuse)
	c.run()
	// Proposer 1's piggybacked promise outbids proposer 2's first ballot.
	c.fireAll(2)
	r := c.results[2]
	if !errors.Is(r.Err, errRefused) || string(r.State.Value) != "a" {
		t.Fatalf("result %+v, want refusal showing a", r)
	}
}

func TestRefusedAcceptRetriesAfresh(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	c.proposers[1].Propose(1, "k", incr(1))
	c.run()
	// Proposer 2 prepares above proposer 1's cached promise, but its accept
	// is lost. Proposer 1's one-round-trip accept is then refused by every
	// acceptor, each showing it accepted nothing at or above that ballot:
	// the accept is dead, and the retry applies the change afresh.
	c.drop = func(m Message) bool { return m.Kind == MsgAccept && m.From == 2 }
	c.proposers[2].Propose(2, "k", incr(1))
	c.run()
	c.fireAll(2) // backoff, then a prepare that wins, then a lost accept
	c.drop = nil
	c.proposers[1].Propose(3, "k", incr(1))
	c.run()
	if _, ok := c.results[3]; ok {
		t.Fatalf("request 3 answered before its retry: %+v", c.results[3])
	}
	c.fireAll(1)
	if r := c.results[3]; r.Err != nil || string(r.State.Value) != "2" {
		t.Fatalf("result %+v, want 2", r)
	}
}

func TestRefusalBySupersededAcceptorsIsUnknown(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	c.proposers[1].Propose(1, "k", incr(1))
	c.run()
	c.proposers[2].Propose(2, "k", incr(1))
	c.run()
	c.fireAll(2)
	if r := c.results[2]; r.Err != nil || string(r.State.Value) != "2" {
		t.Fatalf("result %+v, want 2", r)
	}
	// Every acceptor refuses proposer 1's accept but shows a higher accepted
	// ballot; that is also what a duplicate of an accept it took before
	// would get, so the refusals prove nothing.
	c.proposers[1].Propose(3, "k", incr(1))
	c.run()
	c.fireAll(1)
	if r := c.results[3]; !errors.Is(r.Err, ErrUnknownOutcome) {
		t.Fatalf("result %+v, want unknown outcome", r)
	}
	// The key still works, and the lost change did not happen.
	c.proposers[1].Propose(4, "k", incr(1))
	c.run()
	c.fireAll(1)
	if r := c.results[4]; r.Err != nil || string(r.State.Value) != "3" {
		t.Fatalf("result %+v, want 3", r)
	}
}

func TestReadFastPath(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	c.proposers[1].Propose(1, "k", set("a"))
	c.run()
	var accepts int
	c.drop = func(m Message) bool {
		if m.Kind == MsgAccept || m.Kind == MsgPrepare {
			accepts++
		}
		return false
	}
	c.proposers[2].Read(2, "k")
	c.run()
	if r := c.results[2]; r.Err != nil || string(r.State.Value) != "a" || accepts != 0 {
		t.Fatalf("result %+v after %d prepares/accepts", r, accepts)
	}
}

func TestCancelBeforeAndAfterAccept(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	c.drop = func(m Message) bool { return m.Kind == MsgAccepted }
	p := c.proposers[1]
	p.Propose(1, "k", set("a"))
	p.Propose(2, "k", set("b"))
	c.run()
	p.Cancel(2) // still queued
	p.Cancel(1) // its accept was sent
	c.collect(1)
	if !errors.Is(c.results[2].Err, ErrAborted) || !errors.Is(c.results[1].Err, ErrUnknownOutcome) {
		t.Fatalf("results %+v", c.results)
	}
}

func TestRecycleReusesReadySlices(t *testing.T) {
	p, err := NewProposer(ProposerConfig{ID: 1, Acceptors: Majority(1, 1, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	p.Propose(1, "a", set("x"))
	first := p.Ready()
	if len(first.Messages) != 3 {
		t.Fatalf("first Ready has %d messages, want 3 prepares", len(first.Messages))
	}
	p.Recycle(first)
	p.Propose(2, "b", set("y"))
	second := p.Ready()
	if len(second.Messages) != 3 {
		t.Fatalf("second Ready has %d messages, want 3 prepares", len(second.Messages))
	}
	if &second.Messages[0] != &first.Messages[0] {
		t.Error("the second Ready did not reuse the recycled Messages")
	}
	for _, m := range second.Messages {
		if m.Key != "b" || m.Kind != MsgPrepare {
			t.Errorf("second Ready carries %v, want only prepares of b", m)
		}
	}
	// A Ready recycled after newer output was queued gives nothing back:
	// the newer output must stay as it is.
	p.Propose(3, "c", set("z"))
	p.Recycle(second)
	third := p.Ready()
	if len(third.Messages) != 3 || third.Messages[0].Key != "c" {
		t.Fatalf("third Ready = %v, want the 3 prepares of c", third.Messages)
	}
}

// TestTimedChangeRunsAtEachAttempt: a TimedChange is built at the time of
// the attempt that computes it, not of its proposal, so that an
// exactly-once write retried long after it was proposed judges its window
// at the retry's time (a write fixed at its proposal could apply a second
// time after deletion GC took its key's request table: internal/sim seeds
// 3000307 and 3001713).
func TestTimedChangeRunsAtEachAttempt(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	var seen []int64
	timed := func(now int64) Change {
		return func(cur State) (Write, error) {
			seen = append(seen, now)
			return incr(1)(cur)
		}
	}
	// Proposer 2 holds the key at a higher ballot and its accept is lost,
	// so proposer 1's first attempt is refused and retried after a backoff.
	c.proposers[1].Propose(1, "k", incr(1))
	c.run()
	c.drop = func(m Message) bool { return m.Kind == MsgAccept && m.From == 2 }
	c.proposers[2].Propose(2, "k", incr(1))
	c.run()
	c.fireAll(2)
	c.drop = nil
	c.proposers[1].SetNow(100)
	c.proposers[1].ProposeTimed(3, "k", timed)
	c.run()
	c.proposers[1].SetNow(90) // a clock that steps back is not followed
	c.proposers[1].SetNow(5000)
	c.fireAll(1)
	if r := c.results[3]; r.Err != nil || string(r.State.Value) != "2" {
		t.Fatalf("result %+v, want 2", r)
	}
	if len(seen) < 2 || seen[0] != 100 || seen[len(seen)-1] != 5000 {
		t.Fatalf("the change ran at %v, want 100 first and 5000 at the retry", seen)
	}
}
