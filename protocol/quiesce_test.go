package protocol

import (
	"math/rand/v2"
	"testing"
)

type firedTimer struct {
	p NodeID
	t Timer
}

// TestEveryRequestAnsweredAndForgotten drives two proposers through random
// mixes of every call (Propose, Read, FastRead, ProposeGC, Rewrite, Cancel,
// Forget, SetConfig), lost messages and timers firing in any order, with and
// without Gather. Once every message is delivered and every timer fired,
// every request must have been answered exactly once and the proposers must
// hold no key, read or request: no path leaves a request waiting or a key's
// state behind (a hold of Gather with no timer, say).
func TestEveryRequestAnsweredAndForgotten(t *testing.T) {
	const seeds = 1000
	for seed := uint64(0); seed < seeds; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		gather := seed%4 != 0
		maxBatch := 2 + rng.IntN(4)
		acc := []NodeID{1, 2, 3}
		c := newCluster(t, acc, []NodeID{1, 2}, func(cfg *ProposerConfig) { cfg.Gather = gather; cfg.MaxBatch = maxBatch })
		pending := map[ReqID]NodeID{}
		var timers []firedTimer
		collect := func(id NodeID) {
			rd := c.proposers[id].Ready()
			if rd.Ceiling != 0 {
				c.ceilings[id] = rd.Ceiling
			}
			c.queue = append(c.queue, rd.Messages...)
			for _, r := range rd.Results {
				if _, ok := pending[r.ID]; !ok {
					t.Fatalf("seed %d: result for %d, which is not pending (answered twice?)", seed, r.ID)
				}
				delete(pending, r.ID)
			}
			for _, tm := range rd.Timers {
				timers = append(timers, firedTimer{id, tm})
			}
		}
		deliver := func(i int) {
			m := c.queue[i]
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			if m.Kind.IsRequest() {
				c.stepAcceptor(m)
				return
			}
			c.proposers[m.To].Step(m)
			collect(m.To)
		}
		keys := []string{"a", "b"}
		next, version := ReqID(1), uint64(1)
		for range 300 {
			pid := NodeID(1)
			if rng.IntN(10) == 0 {
				pid = 2
			}
			p := c.proposers[pid]
			k := keys[rng.IntN(len(keys))]
			call := func(f func(ReqID, string)) {
				pending[next] = pid
				f(next, k)
				next++
			}
			switch x := rng.IntN(100); {
			case x < 25:
				call(func(id ReqID, k string) { p.Propose(id, k, incr(1)) })
			case x < 30:
				call(p.Read)
			case x < 32:
				call(p.FastRead)
			case x < 34:
				call(p.ProposeGC)
			case x < 36:
				call(p.Rewrite)
			case x < 40:
				for id, owner := range pending {
					if owner == pid && rng.IntN(3) == 0 {
						p.Cancel(id)
						break
					}
				}
			case x < 41:
				p.Forget(k, Ballot{Counter: 1}, 1)
			case x < 42:
				version++
				for id, q := range c.proposers {
					if err := q.SetConfig(Majority(version, acc...)); err != nil {
						t.Fatal(err)
					}
					collect(id)
				}
			case x < 90:
				if len(c.queue) > 0 {
					i := rng.IntN(len(c.queue))
					if rng.IntN(10) == 0 {
						c.queue = append(c.queue[:i], c.queue[i+1:]...) // lost
					} else {
						deliver(i)
					}
				}
			default:
				if len(timers) > 0 {
					i := rng.IntN(len(timers))
					if timers[i].t.Kind == TimerAttempt && rng.IntN(10) != 0 {
						break // attempts mostly get their replies first
					}
					tm := timers[i]
					timers = append(timers[:i], timers[i+1:]...)
					c.proposers[tm.p].Fire(tm.t)
					collect(tm.p)
				}
			}
			collect(pid)
		}
		// Deliver everything and fire every timer until nothing is left.
		for round := 0; round < 10000 && (len(c.queue) > 0 || len(timers) > 0); round++ {
			for len(c.queue) > 0 {
				deliver(0)
			}
			ts := timers
			timers = nil
			for _, tm := range ts {
				c.proposers[tm.p].Fire(tm.t)
				collect(tm.p)
			}
		}
		for id, owner := range pending {
			r := c.proposers[owner].reqs[id]
			t.Fatalf("seed %d (gather %v): request %d on proposer %d (key %q) never answered; key state %+v",
				seed, gather, id, owner, r.key, c.proposers[owner].keys[r.key])
		}
		for id, p := range c.proposers {
			for k, ks := range p.keys {
				t.Fatalf("seed %d (gather %v): proposer %d keeps key %q: %+v", seed, gather, id, k, ks)
			}
			if len(p.reads) != 0 || len(p.reqs) != 0 {
				t.Fatalf("seed %d (gather %v): proposer %d keeps %d reads and %d requests", seed, gather, id, len(p.reads), len(p.reqs))
			}
		}
	}
}
