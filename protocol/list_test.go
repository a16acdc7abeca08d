package protocol

import (
	"reflect"
	"slices"
	"testing"
)

func TestMergeList(t *testing.T) {
	b1 := Ballot{Counter: 1, Proposer: 1}
	b2 := Ballot{Counter: 2, Proposer: 2}
	live := func(key string, b Ballot, v string, version uint64) ListEntry {
		return ListEntry{Key: key, Register: Register{Promise: b, Accepted: b, State: State{Value: []byte(v), Version: version}}}
	}
	dead := func(key string, b Ballot, version uint64) ListEntry {
		return ListEntry{Key: key, Register: Register{Promise: b, Accepted: b, State: State{Version: version, Deleted: true}}}
	}
	omitted := func(e ListEntry) ListEntry { e.Register.State.Value, e.ValueOmitted = nil, true; return e }
	reply := func(more bool, es ...ListEntry) ListReply { return ListReply{Entries: es, More: more} }
	chosen := func(key, v string, version uint64) ListKey {
		return ListKey{Key: key, Verdict: ListChosen, State: State{Value: []byte(v), Version: version}}
	}
	undecided := func(key string) ListKey { return ListKey{Key: key, Verdict: ListUndecided} }

	tests := []struct {
		name    string
		quorum  int
		replies []ListReply
		keys    []ListKey
		through string
		done    bool
	}{{
		name:    "agreeing replies",
		quorum:  2,
		replies: []ListReply{reply(false, live("a", b1, "x", 1), live("b", b1, "y", 1)), reply(false, live("a", b1, "x", 1), live("b", b1, "y", 1))},
		keys:    []ListKey{chosen("a", "x", 1), chosen("b", "y", 1)},
		done:    true,
	}, {
		name:    "a disagreeing key is undecided",
		quorum:  2,
		replies: []ListReply{reply(false, live("a", b2, "new", 2)), reply(false, live("a", b1, "old", 1))},
		keys:    []ListKey{undecided("a")},
		done:    true,
	}, {
		name:    "a disagreeing key is chosen where a quorum agrees",
		quorum:  2,
		replies: []ListReply{reply(false, live("a", b2, "new", 2)), reply(false, live("a", b1, "old", 1)), reply(false, live("a", b2, "new", 2))},
		keys:    []ListKey{chosen("a", "new", 2)},
		done:    true,
	}, {
		name:    "a tombstone is chosen, not live",
		quorum:  2,
		replies: []ListReply{reply(false, dead("a", b2, 3)), reply(false, dead("a", b2, 3))},
		keys:    []ListKey{{Key: "a", Verdict: ListChosen, State: State{Version: 3, Deleted: true}}},
		done:    true,
	}, {
		name:    "a key only a minority holds is absent",
		quorum:  2,
		replies: []ListReply{reply(false, live("a", b1, "x", 1)), reply(false), reply(false)},
		keys:    []ListKey{{Key: "a", Verdict: ListChosen}},
		done:    true,
	}, {
		name:    "a key some acceptors hold, but not a quorum either way, is undecided",
		quorum:  2,
		replies: []ListReply{reply(false, live("a", b1, "x", 1)), reply(false)},
		keys:    []ListKey{undecided("a")},
		done:    true,
	}, {
		name:   "a reply that stopped at its limit bounds the round",
		quorum: 2,
		replies: []ListReply{
			reply(true, live("a", b1, "x", 1), live("c", b1, "z", 1)),
			reply(false, live("a", b1, "x", 1), live("c", b1, "z", 1), live("d", b1, "w", 1)),
			reply(true, live("a", b1, "x", 1), live("b", b1, "y", 1)),
		},
		// b: the two replies past it do not hold it, so it is absent.
		keys:    []ListKey{chosen("a", "x", 1), {Key: "b", Verdict: ListChosen}},
		through: "b",
	}, {
		name:    "the value comes from a reply that has it",
		quorum:  2,
		replies: []ListReply{reply(false, omitted(live("a", b1, "x", 1))), reply(false, live("a", b1, "x", 1))},
		keys:    []ListKey{chosen("a", "x", 1)},
		done:    true,
	}, {
		name:    "omitted everywhere stays omitted",
		quorum:  2,
		replies: []ListReply{reply(false, omitted(live("a", b1, "x", 1))), reply(false, omitted(live("a", b1, "x", 1)))},
		keys:    []ListKey{{Key: "a", Verdict: ListChosen, State: State{Version: 1}, ValueOmitted: true}},
		done:    true,
	}, {
		name:    "nothing anywhere",
		quorum:  2,
		replies: []ListReply{reply(false), reply(false)},
		done:    true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, through, done := MergeList(tt.quorum, tt.replies)
			if !reflect.DeepEqual(keys, tt.keys) || through != tt.through || done != tt.done {
				t.Fatalf("MergeList = %v, %q, %v; want %v, %q, %v", keys, through, done, tt.keys, tt.through, tt.done)
			}
		})
	}
}

func TestMergeListRefusesMisuse(t *testing.T) {
	for name, f := range map[string]func(){
		"quorum 0":           func() { MergeList(0, nil) },
		"More with no entry": func() { MergeList(1, []ListReply{{More: true}}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

// TestListQuorumsMeetAcrossPlans is the analysis behind ListRoundStale. A
// listing round asked under configuration C merges ReadQuorum replies of
// C's accept set; the read rule needs those repliers to meet every accept
// quorum (so that nothing chosen is missed) and every prepare quorum (so
// that a ballot they agree on stays chosen) of every configuration in use
// while the round runs. A caller settles every proposer on each step of a
// plan before it starts the next, so while a node holds C, only C's
// neighbours are in use; a round whose node still holds C when its replies
// are in was answered while only C−1, C and C+1 were. The test walks every
// chain of three membership changes among six nodes, from three acceptors,
// and checks that a round's repliers meet the quorums of every
// configuration up to two steps after C (one more than the rule needs) and
// one before; and that three steps after, they may not: a round that saw
// its node change configuration must be asked again.
func TestListQuorumsMeetAcrossPlans(t *testing.T) {
	meets := func(c, d Config) bool {
		rq := c.ReadQuorum()
		return QuorumsIntersect(c.AcceptSet, rq, d.AcceptSet, d.AcceptQuorum) &&
			QuorumsIntersect(c.AcceptSet, rq, d.PrepareSet, d.PrepareQuorum)
	}
	var chains, farMisses int
	var walk func(chain []Config, changes int)
	walk = func(chain []Config, changes int) {
		chains++
		for i, c := range chain {
			for j := max(0, i-1); j < len(chain); j++ {
				switch ok := meets(c, chain[j]); {
				case !ok && j <= i+2:
					t.Fatalf("a round asked under %+v misses the quorums of %+v, %d steps from it", c, chain[j], j-i)
				case !ok && j == i+3:
					farMisses++
				}
			}
		}
		if changes == 0 {
			return
		}
		cur := chain[len(chain)-1]
		for x := NodeID(1); x <= 6; x++ {
			var plan []PlanStep
			var err error
			switch in := slices.Contains(cur.AcceptSet, x); {
			case in && len(cur.AcceptSet) > 3:
				plan, err = PlanRemove(cur, x)
			case !in && len(cur.AcceptSet) < 6:
				plan, err = PlanAdd(cur, x)
			default:
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			next := slices.Clone(chain)
			for _, s := range plan {
				next = append(next, s.Config)
			}
			walk(next, changes-1)
		}
	}
	walk([]Config{Majority(1, 1, 2, 3)}, 3)
	if farMisses == 0 {
		t.Fatalf("in %d chains, no round missed a quorum three steps on: the rule's margin is not what the comment says", chains)
	}
	t.Logf("%d chains; %d (round, configuration three steps on) pairs miss a quorum", chains, farMisses)
}

// TestListRoundStale: a round is asked again exactly when its node's
// configuration changed while it ran.
func TestListRoundStale(t *testing.T) {
	c1, c2 := Majority(1, 1, 2, 3), Majority(2, 1, 2, 3)
	tests := []struct {
		asked, now Config
		stale      bool
	}{{c1, c1, false}, {c1, c2, true}}
	for _, tt := range tests {
		if got := ListRoundStale(tt.asked, tt.now); got != tt.stale {
			t.Errorf("ListRoundStale(v%d, v%d) = %v, want %v", tt.asked.Version, tt.now.Version, got, tt.stale)
		}
	}
}
