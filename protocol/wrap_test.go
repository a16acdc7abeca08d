package protocol

import (
	"errors"
	"math"
	"testing"
)

// Ballot counters, ceilings, versions and ages near 2^64 are errors, never
// a wrap to 0: each case drives a proposer from a value near the top and
// checks that no message leaves with a counter it used before (0 included),
// that every ceiling asked for covers the counters used, and what the
// requests were answered.
func TestCountersNeverWrap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ceiling uint64 // the persisted ceiling the proposer restarts from
		step    uint64
		seen    uint64 // a conflict shows this counter before the change, if not 0
		want    []error
	}{
		{name: "restart at MaxCounter", ceiling: MaxCounter, want: []error{ErrExhausted, ErrExhausted}},
		{name: "restart at 2^64-1", ceiling: math.MaxUint64, want: []error{ErrExhausted}},
		{name: "one counter left", ceiling: MaxCounter - 1, want: []error{nil, ErrExhausted}},
		{name: "a step past 2^64", ceiling: 1000, step: math.MaxUint64, want: []error{nil, nil, nil}},
		{name: "a conflict showing 2^64-1", ceiling: 5, seen: math.MaxUint64, want: []error{nil, nil}},
		{name: "a conflict showing MaxCounter", ceiling: 5, seen: MaxCounter, want: []error{ErrExhausted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) {
				cfg.Ceiling, cfg.CeilingStep = tc.ceiling, tc.step
			})
			c.ceilings[1] = tc.ceiling
			p := c.proposers[1]
			if tc.seen != 0 {
				p.Step(Message{Kind: MsgConflict, From: 2, To: 1, Key: "other", Seen: Ballot{Counter: tc.seen, Proposer: 2}})
			}
			used := map[uint64]bool{}
			var last uint64
			c.drop = func(m Message) bool {
				if (m.Kind == MsgPrepare || m.Kind == MsgAccept) && m.To == 1 {
					if m.Ballot.Counter <= last && m.Kind == MsgPrepare || m.Ballot.Counter == 0 {
						t.Fatalf("%v reuses counter %d (last used %d)", m.Kind, m.Ballot.Counter, last)
					}
					if m.Next.Counter > MaxCounter || m.Ballot.Counter > MaxCounter {
						t.Fatalf("%v carries a counter past MaxCounter: %v next %v", m.Kind, m.Ballot, m.Next)
					}
					used[m.Ballot.Counter] = true
					last = max(last, m.Ballot.Counter, m.Next.Counter)
				}
				return false
			}
			for i, want := range tc.want {
				id := ReqID(i + 1)
				p.Propose(id, "k", set("v"))
				c.settle(id)
				if got := c.results[id].Err; !errors.Is(got, want) {
					t.Fatalf("change %d answered %v, want %v", i+1, got, want)
				}
				if c.ceilings[1] < last {
					t.Fatalf("counter %d used above the persisted ceiling %d", last, c.ceilings[1])
				}
			}
		})
	}
}

// settle runs the cluster, firing timers, until request id is answered.
func (c *cluster) settle(id ReqID) {
	c.t.Helper()
	c.run()
	for i := 0; c.results[id].ID == 0; i++ {
		if i == 100 || len(c.timers) == 0 {
			c.t.Fatalf("request %d not answered", id)
		}
		c.fireAll(1)
	}
}

// FastForward and Forget refuse counters, versions and ages past the
// maximum, and change nothing then.
func TestForgetRefusesValuesNearTheTop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		age     uint64
		ballot  Ballot
		version uint64
		want    error
		wantAge uint64
	}{
		{"a tombstone ballot at 2^64-1", 3, Ballot{Counter: math.MaxUint64, Proposer: 2}, 1, ErrExhausted, 3},
		{"a tombstone version at 2^64-1", 3, Ballot{Counter: 9, Proposer: 2}, math.MaxUint64, ErrExhausted, 3},
		{"a tombstone at MaxCounter", 3, Ballot{Counter: MaxCounter, Proposer: 2}, MaxVersion, nil, 4},
		{"an age at MaxAge", MaxAge, Ballot{Counter: 9, Proposer: 2}, 1, ErrExhausted, MaxAge},
		{"an age of 2^64-1 restored", math.MaxUint64, Ballot{Counter: 9, Proposer: 2}, 1, ErrExhausted, MaxAge},
		{"an age one below MaxAge", MaxAge - 1, Ballot{Counter: 9, Proposer: 2}, 1, nil, MaxAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewProposer(ProposerConfig{ID: 1, Acceptors: Majority(1, 1, 2, 3), Ceiling: 100})
			if err != nil {
				t.Fatal(err)
			}
			p.SetAge(tc.age)
			p.Ready()
			age, err := p.Forget("k", tc.ballot, tc.version)
			if !errors.Is(err, tc.want) || age != tc.wantAge || p.Age() != tc.wantAge {
				t.Fatalf("Forget = %d, %v (age %d); want %d, %v", age, err, p.Age(), tc.wantAge, tc.want)
			}
			rd := p.Ready()
			if tc.want != nil && rd.Ceiling != 0 {
				t.Fatalf("a refused Forget asked for ceiling %d", rd.Ceiling)
			}
			if to := max(tc.ballot.Counter, tc.version); tc.want == nil && to > 100 && (rd.Ceiling < to || rd.Ceiling > MaxCounter) {
				t.Fatalf("Forget asked for ceiling %d, want between %d and %d", rd.Ceiling, max(tc.ballot.Counter, tc.version), MaxCounter)
			}
		})
	}
}

// A version never wraps: the write that would take it past MaxVersion is
// refused (the state stays), the one before it still succeeds.
func TestVersionNeverWraps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint64
		want    error
		next    uint64
	}{
		{"one below MaxVersion", MaxVersion - 1, nil, MaxVersion},
		{"at MaxVersion", MaxVersion, ErrExhausted, MaxVersion},
		{"at 2^64-1", math.MaxUint64, ErrExhausted, math.MaxUint64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, nil)
			for _, regs := range c.acceptors {
				regs["k"] = Register{Promise: Ballot{Counter: 1, Proposer: 2}, Accepted: Ballot{Counter: 1, Proposer: 2},
					State: State{Value: []byte("old"), Version: tc.version}}
			}
			c.proposers[1].Propose(1, "k", set("new"))
			c.settle(1)
			r := c.results[1]
			if !errors.Is(r.Err, tc.want) || r.State.Version != tc.next {
				t.Fatalf("write answered %v at version %d; want %v at %d", r.Err, r.State.Version, tc.want, tc.next)
			}
			for id, regs := range c.acceptors {
				if v := regs["k"].State.Version; v != tc.next {
					t.Fatalf("acceptor %d holds version %d, want %d", id, v, tc.next)
				}
			}
		})
	}
	// A register with no history takes its first version from the counter,
	// which never passes MaxCounter = MaxVersion.
	if _, err := nextVersion(State{}, MaxCounter, 0); err != nil {
		t.Fatalf("first version at MaxCounter: %v", err)
	}
	if _, err := nextVersion(State{}, MaxCounter+1, 0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("first version past MaxCounter: %v, want ErrExhausted", err)
	}
}
