package protocol

import (
	"errors"
	"slices"
	"testing"
)

// readsTo returns the acceptors the MsgRead messages in q go to, in order.
func readsTo(q []Message) []NodeID {
	var to []NodeID
	for _, m := range q {
		if m.Kind == MsgRead {
			to = append(to, m.To)
		}
	}
	return to
}

func TestReadAsksNearestQuorumFirst(t *testing.T) {
	acceptors := []NodeID{1, 2, 3, 4, 5}
	tests := []struct {
		name  string
		self  NodeID
		tiers [][]NodeID
		want  func(key string) []NodeID
	}{
		{"self then rank", 1, nil, func(key string) []NodeID {
			r := slices.DeleteFunc(Rank(key, acceptors), func(id NodeID) bool { return id == 1 })
			return append([]NodeID{1}, r[:2]...)
		}},
		{"self then nearest tier", 2, [][]NodeID{{5}, {4}, {3}}, func(string) []NodeID { return []NodeID{2, 5, 4} }},
		{"a tier in rank", 3, [][]NodeID{{1, 5}}, func(key string) []NodeID {
			r := slices.DeleteFunc(Rank(key, acceptors), func(id NodeID) bool { return id != 1 && id != 5 })
			return append([]NodeID{3}, r...) // three make the read quorum of five
		}},
		{"proposer not an acceptor", 9, nil, func(key string) []NodeID { return Rank(key, acceptors)[:3] }},
		{"many tiers, unlisted last", 2, [][]NodeID{nil, nil, nil, nil, nil, nil, {4}, {1}}, func(key string) []NodeID {
			return []NodeID{2, 4, 1}
		}},
		{"too few reachable: ask all", 1, [][]NodeID{{2}}, func(key string) []NodeID {
			r := slices.DeleteFunc(Rank(key, acceptors), func(id NodeID) bool { return id == 1 || id == 2 })
			return append([]NodeID{1, 2}, r...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, key := range []string{"a", "b", "k17", "zz"} {
				c := newCluster(t, acceptors, []NodeID{tt.self}, nil)
				p := c.proposers[tt.self]
				p.SetProximity(tt.tiers)
				p.Read(1, key)
				rd := p.Ready()
				if got, want := readsTo(rd.Messages), tt.want(key); !slices.Equal(got, want) {
					t.Fatalf("key %q: read sent to %v, want %v", key, got, want)
				}
				wantTimer := TimerWiden
				if len(readsTo(rd.Messages)) == len(acceptors) {
					wantTimer = TimerRead
				}
				if len(rd.Timers) != 1 || rd.Timers[0].Kind != wantTimer {
					t.Fatalf("key %q: timers %+v, want one of kind %d", key, rd.Timers, wantTimer)
				}
			}
		})
	}
}

func TestReadWidensThenFallsBack(t *testing.T) {
	tests := []struct {
		name string
		// prepare runs before the read; act after the read's first
		// messages and timer are queued (c.queue, c.timers).
		prepare  func(c *cluster)
		act      func(c *cluster)
		asked    int  // acceptors the read asked in the end
		slowPath bool // it left the fast path (sent a prepare)
	}{
		{
			name:  "agreement of the first two",
			act:   func(c *cluster) { c.run() },
			asked: 2,
		},
		{
			name: "first timer asks the third",
			act: func(c *cluster) {
				silent := readsTo(c.queue)[1] // never answers
				c.drop = dropAlso(c.drop, func(m Message) bool { return m.To == silent || m.From == silent })
				c.run()
				c.fireAll(1)
			},
			asked: 3,
		},
		{
			name: "disagreement asks the third",
			prepare: func(c *cluster) {
				// A change accepted by 1 and 3 only: 2 lags behind, and the
				// read asks 2 before 3.
				c.drop = func(m Message) bool { return m.Kind == MsgAccept && m.To == 2 }
				c.proposers[1].Propose(9, "k", set("v"))
				c.run()
				c.drop = nil
				c.timers = nil
				c.proposers[1].SetProximity([][]NodeID{{2}, {3}})
			},
			act:   func(c *cluster) { c.run() },
			asked: 3,
		},
		{
			name: "both timers leave the fast path",
			act: func(c *cluster) {
				off := func(m Message) bool { return m.Kind == MsgReadReply && m.From != 1 }
				c.drop = dropAlso(c.drop, off)
				c.run()
				c.fireAll(1) // TimerWiden: asks the third, whose reply is dropped too
				if n := len(c.timers); n != 1 || c.timers[0].Kind != TimerRead {
					c.t.Fatalf("timers %+v, want one TimerRead", c.timers)
				}
				c.fireAll(1) // TimerRead: the identity change
			},
			asked:    3,
			slowPath: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
			if tt.prepare != nil {
				tt.prepare(c)
			}
			var reads, prepares int
			c.drop = func(m Message) bool {
				switch m.Kind {
				case MsgRead:
					reads++
				case MsgPrepare:
					prepares++
				}
				return false
			}
			c.proposers[1].Read(1, "k")
			c.collect(1)
			tt.act(c)
			if r, ok := c.results[1]; !ok || r.Err != nil {
				t.Fatalf("read not answered: %+v (answered %v)", r, ok)
			}
			if reads != tt.asked {
				t.Fatalf("read asked %d acceptors, want %d", reads, tt.asked)
			}
			if got := prepares > 0; got != tt.slowPath {
				t.Fatalf("read left the fast path: %v, want %v", got, tt.slowPath)
			}
		})
	}
}

// dropAlso drops what a or b drops; a sees every message (it may count).
func dropAlso(a, b func(Message) bool) func(Message) bool {
	return func(m Message) bool {
		da := a != nil && a(m)
		return b(m) || da
	}
}

func TestFastReadAnswersSlowReadInsteadOfWriting(t *testing.T) {
	c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1, 2}, nil)
	// Three different accepted ballots: no two replies agree.
	for i, to := range []NodeID{1, 2, 3} {
		c.drop = func(m Message) bool { return m.Kind == MsgAccept && m.To != to }
		c.proposers[1].Propose(ReqID(10+i), "k", set("v"))
		c.run()
		c.fireAll(1)
	}
	c.drop = nil
	var writes int
	c.drop = func(m Message) bool {
		if m.Kind == MsgPrepare || m.Kind == MsgAccept {
			writes++
		}
		return false
	}
	c.proposers[2].FastRead(1, "k")
	c.run()
	if r := c.results[1]; !errors.Is(r.Err, ErrSlowRead) {
		t.Fatalf("FastRead answered %+v, want ErrSlowRead", r)
	}
	if writes != 0 {
		t.Fatalf("FastRead sent %d prepares or accepts, want none", writes)
	}
	c.proposers[2].Read(2, "k")
	c.run()
	if r := c.results[2]; r.Err != nil || string(r.State.Value) != "v" {
		t.Fatalf("Read after ErrSlowRead: %+v", r)
	}
}

func TestRankAndTop(t *testing.T) {
	sets := [][]NodeID{{1}, {1, 2, 3}, {3, 1, 2}, {5, 4, 3, 2, 1}, {7, 100, 3}}
	for _, set := range sets {
		for _, key := range []string{"", "a", "key-1", "key-2", "x/y/z"} {
			r := Rank(key, set)
			if top := Top(key, set); r[0] != top {
				t.Fatalf("Rank(%q, %v) = %v but Top = %d", key, set, r, top)
			}
			shuffled := slices.Clone(set)
			slices.Reverse(shuffled)
			if r2 := Rank(key, shuffled); !slices.Equal(r, r2) {
				t.Fatalf("Rank(%q) depends on the set's order: %v vs %v", key, r, r2)
			}
			// Removing a member keeps the others' order.
			if len(set) > 1 {
				without := slices.DeleteFunc(slices.Clone(set), func(id NodeID) bool { return id == r[0] })
				if r3 := Rank(key, without); !slices.Equal(r3, r[1:]) {
					t.Fatalf("Rank(%q) without %d: %v, want %v", key, r[0], r3, r[1:])
				}
			}
		}
	}
	if Top("k", nil) != 0 {
		t.Fatal("Top of an empty set is not 0")
	}
}
