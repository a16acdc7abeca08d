package protocol

import "testing"

// A proposer that is not a key's home (the membership catch-up's Rewrite
// runs on the controller's node) must get in between the changes the home
// keeps committing through its one-round-trip cache: a prepare refused
// because the home's promises moved past it must not push its retries out
// to the longest backoff, or each retry's ballot, fast-forwarded when the
// refusal came, is stale again when it is sent.
func TestRewriteIsNotStarvedByHomeOneRoundTrip(t *testing.T) {
	const home, other NodeID = 10, 20
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{home, other}, nil)
	type due struct {
		at int
		t  Timer
	}
	var pending []due
	now := 0 // simulated milliseconds
	delay := func(tm Timer) int {
		switch tm.Kind {
		case TimerAttempt:
			return 500
		case TimerBackoff: // server.backoff's upper bound: 2ms doubled per retry, at most 200ms
			d := 2
			for i := 1; i < tm.Retry && d < 200; i++ {
				d *= 2
			}
			return min(d, 200)
		default:
			return 1
		}
	}
	// Collect the other proposer's timers ourselves, with due times.
	take := func() {
		for _, tm := range c.timers {
			pending = append(pending, due{now + delay(tm), tm})
		}
		c.timers = nil
	}
	var next ReqID = 1
	c.proposers[home].Propose(next, "k", set("v"))
	c.run()
	c.timers = nil
	const rewrite ReqID = 1 << 40
	c.proposers[other].Rewrite(rewrite, "k")
	unreachable := 2000 // the other proposer's messages are lost at first
	c.drop = func(m Message) bool { return now < unreachable && (m.From == other || m.To == other) }
	c.run()
	take()
	for now = 1; now <= 12000; now++ {
		// The home commits a change of k every 10ms, and of other keys
		// every millisecond (its ballot counter is shared by all keys).
		next++
		c.proposers[home].Propose(next, "x", set("x"))
		if now%10 == 0 {
			next++
			c.proposers[home].Propose(next, "k", set("v"))
		}
		c.run()
		c.timers = c.timers[:0] // the home's timers are not needed: it never fails here
		snapshot := pending
		pending = nil
		for _, d := range snapshot {
			if d.at > now {
				pending = append(pending, d)
				continue
			}
			c.proposers[other].Fire(d.t)
			c.collect(other)
			c.run()
			take()
		}
		take()
		if _, ok := c.results[rewrite]; ok {
			t.Logf("rewrite answered at %dms, %dms after the other proposer became reachable", now, now-unreachable)
			return
		}
	}
	t.Fatalf("the rewrite was never answered in 10s after the other proposer became reachable")
}
