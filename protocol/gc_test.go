package protocol

import (
	"errors"
	"math"
	"testing"
)

// runFenced runs the cluster like run, but every acceptor applies the age
// fence of fences (per proposer) before Step.
func (c *cluster) runFenced(fences map[NodeID]uint64) {
	for id := range c.proposers {
		c.collect(id)
	}
	for len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		if c.drop != nil && c.drop(m) {
			continue
		}
		if m.Kind.IsRequest() {
			if reply, fenced := Fenced(m, fences[m.From]); fenced {
				c.queue = append(c.queue, reply)
				continue
			}
			regs := c.acceptors[m.To]
			next, reply, _ := Step(regs[m.Key], m)
			regs[m.Key] = next
			c.queue = append(c.queue, reply)
			continue
		}
		c.proposers[m.To].Step(m)
		c.collect(m.To)
	}
}

func TestProposeGCNeedsEveryAcceptor(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("v"))
	c.run()
	p.Propose(2, "k", func(State) (Write, error) { return Write{Kind: WriteDelete}, nil })
	c.run()
	tomb := c.results[2].State
	if !tomb.Deleted {
		t.Fatalf("delete answered %v", c.results[2])
	}

	// With acceptor 3 unreachable the GC write cannot finish.
	c.drop = func(m Message) bool { return m.To == 3 }
	p.ProposeGC(3, "k")
	c.run()
	if _, ok := c.results[3]; ok {
		t.Fatalf("GC write answered %v without acceptor 3", c.results[3])
	}
	c.drop = nil
	c.fireAll(1) // the attempt times out
	c.fireAll(1) // the backoff ends; the retry reaches everyone
	r, ok := c.results[3]
	if !ok || r.Err != nil || !r.State.Equal(tomb) || r.Ballot.IsZero() || !r.Ballot.Less(r.Promise) {
		t.Fatalf("GC write = %+v (answered %v), want the tombstone %v under a ballot", r, ok, tomb)
	}
	for id, regs := range c.acceptors {
		if reg := regs["k"]; reg.Accepted != r.Ballot || reg.Promise != r.Promise || !reg.State.Equal(tomb) {
			t.Errorf("acceptor %d holds %v, want the tombstone under %s", id, reg, r.Ballot)
		}
	}
}

func TestProposeGCIsNotComposed(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("a"))
	p.ProposeGC(2, "k")
	p.Propose(3, "k", set("b"))
	c.collect(1)
	// Only the first change's prepare is out; the rest wait, each in its own batch.
	c.run()
	if got := c.results[2]; got.Err != nil || string(got.State.Value) != "a" {
		t.Fatalf("GC write saw %+v, want the state after the first change", got)
	}
	if got := c.results[3]; got.Err != nil || string(got.State.Value) != "b" {
		t.Fatalf("last change = %+v", got)
	}
}

func TestForgetFencesTheAttemptInFlight(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	p1, p2 := c.proposers[1], c.proposers[2]
	p1.Propose(1, "k", set("v"))
	c.run()
	p1.Propose(2, "k", func(State) (Write, error) { return Write{Kind: WriteDelete}, nil })
	c.run()

	// Proposer 2 starts a change; its prepare is answered, then GC runs.
	p2.Propose(3, "k", set("late"))
	c.collect(2)
	prepares := c.queue
	c.queue = nil
	var promises []Message
	for _, m := range prepares {
		next, reply, _ := Step(c.acceptors[m.To]["k"], m)
		c.acceptors[m.To]["k"] = next
		promises = append(promises, reply)
	}
	p1.ProposeGC(4, "k")
	c.run()
	gc := c.results[4]
	if gc.Err != nil || !gc.State.Deleted {
		t.Fatalf("GC write = %+v", gc)
	}
	fences := map[NodeID]uint64{}
	for id, p := range c.proposers {
		fences[id], _ = p.Forget("k", gc.Ballot, gc.State.Version)
		if fences[id] != 1 {
			t.Fatalf("proposer %d age after Forget = %d, want 1", id, fences[id])
		}
	}
	for id, regs := range c.acceptors {
		if regs["k"].Accepted == gc.Ballot {
			delete(regs, "k") // step 4
		} else {
			t.Fatalf("acceptor %d lost the tombstone: %v", id, regs["k"])
		}
	}
	// The stale promises arrive now: proposer 2's accept carries its old
	// age, and every acceptor fences it, although the registers are gone.
	for _, m := range promises {
		p2.Step(m)
	}
	c.collect(2)
	for _, m := range c.queue {
		if m.Kind == MsgAccept && m.Age != 0 {
			t.Fatalf("accept of the attempt begun before GC carries age %d, want 0", m.Age)
		}
	}
	c.runFenced(fences)
	for id, regs := range c.acceptors {
		if reg, ok := regs["k"]; ok {
			t.Fatalf("acceptor %d holds %v after GC: the stale accept got through", id, reg)
		}
	}
	// The attempt fails; its retry, after the backoff, uses the new age and
	// a ballot past the tombstone's.
	for i := 0; i < 4; i++ {
		if _, done := c.results[3]; done {
			break
		}
		ts := c.timers
		c.timers = nil
		for _, tm := range ts {
			p2.Fire(tm)
		}
		c.runFenced(fences)
	}
	r := c.results[3]
	if r.Err != nil || string(r.State.Value) != "late" {
		t.Fatalf("change after GC = %+v", r)
	}
	if !gc.Ballot.Less(r.Ballot) || r.State.Version <= 2 {
		t.Fatalf("change after GC accepted under %s with version %d; want a ballot past the tombstone's %s and a higher version", r.Ballot, r.State.Version, gc.Ballot)
	}
}

func TestForgetAbandonsAChangeThatMayHaveLanded(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("v"))
	c.collect(1)
	// Prepare answered; the accept leaves but no reply comes back.
	c.drop = func(m Message) bool { return m.Kind == MsgAccepted }
	c.run()
	p.Forget("k", Ballot{Counter: 10, Proposer: 2}, 3)
	c.collect(1)
	if r := c.results[1]; !errors.Is(r.Err, ErrUnknownOutcome) {
		t.Fatalf("change in flight during Forget answered %+v, want ErrUnknownOutcome", r)
	}
}

func TestFenced(t *testing.T) {
	for _, tc := range []struct {
		kind   Kind
		age    uint64
		min    uint64
		fenced bool
	}{
		{MsgPrepare, 0, 0, false},
		{MsgPrepare, 1, 2, true},
		{MsgAccept, 2, 2, false},
		{MsgAccept, 1, 2, true},
		{MsgRead, 0, 5, false},
	} {
		m := Message{Kind: tc.kind, From: 1, To: 2, Key: "k", Ballot: Ballot{Counter: 3, Proposer: 1}, Age: tc.age}
		reply, fenced := Fenced(m, tc.min)
		if fenced != tc.fenced {
			t.Errorf("%s age %d, fence %d: fenced = %v", tc.kind, tc.age, tc.min, fenced)
			continue
		}
		if fenced && (reply.Kind != MsgConflict || reply.To != 1 || reply.Ballot != m.Ballot || !reply.Seen.IsZero() || reply.Age != tc.min) {
			t.Errorf("fenced reply = %v", reply)
		}
	}
}

func TestSetConfigSettlesAndDropsCache(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("a"))
	c.run()
	// Next change would use the cache; hold its accept in flight.
	p.Propose(2, "k", set("b"))
	c.collect(1)
	held := c.queue
	c.queue = nil
	if len(held) == 0 || held[0].Kind != MsgAccept {
		t.Fatalf("second change sent %v, want accepts from the cache", held)
	}
	grown := Config{Version: 2, PrepareSet: []NodeID{1, 2, 3}, PrepareQuorum: 2, AcceptSet: []NodeID{1, 2, 3, 4}, AcceptQuorum: 3}
	c.acceptors[4] = map[string]Register{}
	if err := p.SetConfig(grown); err != nil {
		t.Fatal(err)
	}
	if err := p.SetConfig(grown); err == nil {
		t.Fatal("SetConfig took the same version twice")
	}
	if p.Settled(2) {
		t.Fatal("Settled(2) with an accept of version 1 in flight")
	}
	c.queue = held
	c.run()
	if !p.Settled(2) {
		t.Fatal("not Settled after the old attempt finished")
	}
	// The cache was dropped: the next change prepares with the new sets.
	p.Propose(3, "k", set("c"))
	c.collect(1)
	to := map[Kind][]NodeID{}
	for _, m := range c.queue {
		to[m.Kind] = append(to[m.Kind], m.To)
	}
	if len(to[MsgPrepare]) != 3 {
		t.Fatalf("after SetConfig the change sent %v, want a prepare to the 3 acceptors", to)
	}
	c.run()
	if r := c.results[3]; r.Err != nil || string(r.State.Value) != "c" {
		t.Fatalf("change under the new config = %+v", r)
	}
	if reg := c.acceptors[4]["k"]; string(reg.State.Value) != "c" {
		t.Fatalf("new acceptor holds %v, want the accepted state", reg)
	}
}

func TestPrepareTimerDoesNotEndTheAcceptOfItsBallot(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
	p := c.proposers[1]
	p.Propose(1, "k", set("v"))
	c.collect(1)
	prepareTimers := c.timers
	c.timers = nil
	// Deliver prepares and promises, but hold the accepts.
	c.drop = func(m Message) bool { return m.Kind == MsgAccept }
	c.run()
	for _, tm := range prepareTimers {
		p.Fire(tm)
	}
	rd := p.Ready()
	if len(rd.Timers) != 0 || len(rd.Messages) != 0 {
		t.Fatalf("the prepare's timer, fired during the accept, did %+v", rd)
	}
}

func TestForgetPersistsTheFastForward(t *testing.T) {
	p, err := NewProposer(ProposerConfig{ID: 1, Acceptors: Majority(1, 1, 2, 3), CeilingStep: 16})
	if err != nil {
		t.Fatal(err)
	}
	p.Forget("k", Ballot{Counter: 1000, Proposer: 2}, 7)
	if c := p.Ready().Ceiling; c < 1000 {
		t.Fatalf("Ready.Ceiling after Forget past counter 1000 = %d; a restart would reuse counters below the tombstone's", c)
	}
	p.Forget("k", Ballot{Counter: 5, Proposer: 2}, 5)
	if c := p.Ready().Ceiling; c != 0 {
		t.Fatalf("Forget below the ceiling asked for ceiling %d", c)
	}
	// A version above the ballot's counter (composition) moves it too.
	p.Forget("k", Ballot{Counter: 5, Proposer: 2}, 90000)
	if c := p.Ready().Ceiling; c < 90000 {
		t.Fatalf("Forget of a tombstone at version 90000 asked for ceiling %d", c)
	}
}

func TestRewriteAlwaysAccepts(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	c.proposers[1].Propose(1, "k", set("v"))
	c.run()
	// Proposer 2 has no cache: a read through the normal path would find
	// the promises agreeing and skip the accept; a rewrite may not.
	c.proposers[2].Rewrite(2, "k")
	c.run()
	for i := 0; i < 4 && c.results[2].ID == 0; i++ {
		c.fireAll(2) // a first ballot below proposer 1's promise is refused
	}
	if r := c.results[2]; r.Err != nil || string(r.State.Value) != "v" || r.Promise.IsZero() {
		t.Fatalf("rewrite = %+v, want the state, answered by an accept", r)
	}
	for id, regs := range c.acceptors {
		if regs["k"].Accepted.Proposer != 2 {
			t.Errorf("acceptor %d holds %v, want the rewrite's accept", id, regs["k"])
		}
	}
}

// A proposer refused by a fence above its age takes that age (to persist
// through Ready.Age) and its next attempt passes the fence; a fence past
// MaxAge, or below its age, changes nothing.
func TestProposerLearnsFenceFromRefusal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fence   uint64
		wantAge uint64
	}{
		{"above its age", 500, 500},
		{"at MaxAge", MaxAge, MaxAge},
		{"past MaxAge", MaxAge + 1, 2},
		{"at 2^64-1", math.MaxUint64, 2},
		{"below its age", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.Age = 2 })
			c.drop = func(m Message) bool {
				if m.Kind.IsRequest() {
					if reply, fenced := Fenced(m, tc.fence); fenced {
						c.queue = append(c.queue, reply)
						return true
					}
				}
				return false
			}
			p := c.proposers[1]
			p.Propose(1, "k", set("v"))
			c.collect(1)
			var ages []uint64
			for len(c.queue) > 0 {
				m := c.queue[0]
				if m.Kind.IsRequest() {
					ages = append(ages, m.Age)
				}
				c.queue = c.queue[1:]
				if c.drop(m) {
					continue
				}
				if m.Kind.IsRequest() {
					c.stepAcceptor(m)
					continue
				}
				p.Step(m)
				rd := p.Ready()
				if rd.Age != 0 && rd.Age != tc.wantAge {
					t.Fatalf("Ready.Age = %d, want %d", rd.Age, tc.wantAge)
				}
				c.queue = append(c.queue, rd.Messages...)
				for _, r := range rd.Results {
					c.results[r.ID] = r
				}
				c.timers = append(c.timers, rd.Timers...)
				if len(c.queue) == 0 && c.results[1].ID == 0 && len(c.timers) > 0 && len(ages) < 100 {
					for _, tm := range c.timers {
						p.Fire(tm)
					}
					c.timers = nil
					c.collect(1)
				}
			}
			if p.Age() != tc.wantAge {
				t.Fatalf("age after the refusal = %d, want %d", p.Age(), tc.wantAge)
			}
			passes := tc.wantAge >= tc.fence
			if r := c.results[1]; (r.ID != 0 && r.Err == nil) != passes {
				t.Fatalf("change answered %+v (ages sent %v); want success %v", r, ages, passes)
			}
		})
	}
}
