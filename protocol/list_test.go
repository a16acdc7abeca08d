package protocol

import (
	"reflect"
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
