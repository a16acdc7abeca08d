package protocol

import "testing"

// TestGather covers ProposerConfig.Gather: after a contended batch, the next
// batch of the key waits for as many changes as the finished batch and the
// waiting ones, or for TimerGather.
func TestGather(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gather bool
		// release, if set, runs while the batch after the first is held.
		release func(c *cluster, p *Proposer)
		// held: the changes 2 and 3 wait after the first batch.
		held bool
		// accepts the changes 2.. took to be chosen, and the batch sizes.
		wantAccepts int
		wantBatch   uint64 // how far the version rose in the second batch
	}{
		{name: "off: the waiting changes start at once", gather: false, held: false, wantAccepts: 1, wantBatch: 2},
		{name: "the answered caller's next change completes the batch", gather: true, held: true,
			release: func(c *cluster, p *Proposer) { p.Propose(4, "k", incr(1)) }, wantAccepts: 1, wantBatch: 3},
		{name: "the timer starts what has arrived", gather: true, held: true,
			release: func(c *cluster, p *Proposer) { c.fireAll(1) }, wantAccepts: 1, wantBatch: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.Gather = tc.gather })
			p := c.proposers[1]
			// Change 1 goes alone; 2 and 3 arrive while it is in flight.
			p.Propose(1, "k", incr(1))
			c.collect(1)
			p.Propose(2, "k", incr(1))
			p.Propose(3, "k", incr(1))
			accepts := 0
			c.drop = func(m Message) bool {
				if m.Kind == MsgAccept && m.To == 1 && m.Ballot.Counter > 1 {
					accepts++
				}
				return false
			}
			c.run()
			if r := c.results[1]; r.Err != nil || string(r.State.Value) != "1" {
				t.Fatalf("change 1: %+v", r)
			}
			_, answered := c.results[3]
			if answered == tc.held {
				t.Fatalf("after the first batch: change 3 answered %v, want held %v", answered, tc.held)
			}
			if tc.release != nil {
				tc.release(c, p)
				c.run()
			}
			last := ReqID(3)
			if _, ok := c.results[4]; ok {
				last = 4
			}
			for id := ReqID(2); id <= last; id++ {
				if r := c.results[id]; r.Err != nil || r.State.Version == 0 {
					t.Fatalf("change %d: %+v", id, r)
				}
			}
			if accepts != tc.wantAccepts {
				t.Errorf("changes after the first took %d accept rounds, want %d", accepts, tc.wantAccepts)
			}
			if got := c.results[last].State.Version - c.results[1].State.Version; got != tc.wantBatch {
				t.Errorf("the second batch raised the version by %d, want %d", got, tc.wantBatch)
			}
		})
	}
}

// TestGatherNeverHoldsALoneCaller: one caller at a time is never held, and
// no TimerGather is asked for.
func TestGatherNeverHoldsALoneCaller(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.Gather = true })
	p := c.proposers[1]
	for id := ReqID(1); id <= 5; id++ {
		p.Propose(id, "k", incr(1))
		c.run()
		if r, ok := c.results[id]; !ok || r.Err != nil {
			t.Fatalf("change %d not answered at once: %+v", id, r)
		}
	}
	for _, tm := range c.timers {
		if tm.Kind == TimerGather {
			t.Fatalf("a lone caller's key asked for %+v", tm)
		}
	}
}

// TestGatherStaleTimer: the timer of an earlier hold does not release a
// later one, and a read during a hold with nothing waiting takes the fast
// path instead of joining the held batch.
func TestGatherStaleTimer(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.Gather = true })
	p := c.proposers[1]
	hold := func(first ReqID) Timer {
		t.Helper()
		c.timers = nil
		p.Propose(first, "k", incr(1))
		c.collect(1)
		p.Propose(first+1, "k", incr(1))
		c.run()
		// first+1 waited for first: a batch of one with one waiting, so
		// the key holds for two.
		for _, tm := range c.timers {
			if tm.Kind == TimerGather {
				return tm
			}
		}
		t.Fatalf("no hold after changes %d and %d", first, first+1)
		return Timer{}
	}
	stale := hold(1)
	p.Fire(stale) // release the first hold: 2 starts alone
	c.collect(1)
	c.run()
	if _, ok := c.results[2]; !ok {
		t.Fatal("change 2 not answered after its hold's timer")
	}
	if c.proposers[1].keys["k"] != nil {
		t.Fatal("key state kept after the hold ended with nothing waiting")
	}
	_ = hold(3) // 4 is held now
	if _, ok := c.results[4]; ok {
		t.Fatal("change 4 was not held")
	}
	p.Fire(stale)
	c.collect(1)
	c.run()
	if _, ok := c.results[4]; ok {
		t.Fatal("a stale TimerGather released a later hold")
	}

	// A read of a key held with nothing waiting goes on the fast path.
	c2 := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.Gather = true })
	p2 := c2.proposers[1]
	p2.Propose(1, "k", incr(1))
	c2.collect(1)
	p2.Propose(2, "k", incr(1))
	p2.Propose(3, "k", incr(1))
	c2.run()      // 1 alone; 2 and 3 held for a third
	c2.fireAll(1) // 2 and 3 go as a batch of two; the key then holds for two
	ks := p2.keys["k"]
	if ks == nil || ks.hold != 2 || len(ks.queue) != 0 || ks.active != nil {
		t.Fatalf("after a batch of two: key state %+v, want a hold for 2 with nothing waiting", ks)
	}
	reads := 0
	c2.drop = func(m Message) bool {
		if m.Kind == MsgRead {
			reads++
		}
		return false
	}
	p2.Read(10, "k")
	c2.run()
	if r, ok := c2.results[10]; !ok || r.Err != nil || string(r.State.Value) != "3" || reads == 0 {
		t.Fatalf("read during a hold: %+v (answered %v, %d fast-path reads sent)", r, ok, reads)
	}
}
