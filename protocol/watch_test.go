package protocol

import (
	"math/rand/v2"
	"testing"
)

func TestHintsWhole(t *testing.T) {
	five := Majority(1, 1, 2, 3, 4, 5)
	three := Majority(1, 1, 2, 3)
	tests := []struct {
		name      string
		c         Config
		streaming []NodeID
		want      bool
	}{
		{"3 of 5 meet every majority", five, []NodeID{1, 2, 3}, true},
		{"2 of 5 miss the majority 3,4,5", five, []NodeID{1, 2}, false},
		{"2 of 3 meet every majority", three, []NodeID{2, 3}, true},
		{"own acceptor alone is not enough", three, []NodeID{1}, false},
		{"nobody", three, nil, false},
		{"a duplicate counts once", three, []NodeID{1, 1}, false},
		{"an acceptor outside the accept set does not count", three, []NodeID{1, 4}, false},
		{"all of them", three, []NodeID{3, 2, 1}, true},
		{"accept quorum of all needs one stream", Config{AcceptSet: []NodeID{1, 2, 3}, AcceptQuorum: 3}, []NodeID{3}, true},
		{"accept quorum of one needs all streams", Config{AcceptSet: []NodeID{1, 2, 3}, AcceptQuorum: 1}, []NodeID{1, 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HintsWhole(tt.c, tt.streaming); got != tt.want {
				t.Fatalf("HintsWhole(%v of %d, %v) = %v, want %v", tt.c.AcceptSet, tt.c.AcceptQuorum, tt.streaming, got, tt.want)
			}
		})
	}
}

// TestHintsWholeQuick checks HintsWhole against a dumb reference: the
// streams are whole exactly when every accept quorum (every subset of the
// accept set of AcceptQuorum members) holds a streaming acceptor.
func TestHintsWholeQuick(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	for range 2000 {
		n := 1 + rng.IntN(6)
		set := make([]NodeID, n)
		for i := range set {
			set[i] = NodeID(i + 1)
		}
		c := Config{AcceptSet: set, AcceptQuorum: 1 + rng.IntN(n)}
		var streaming []NodeID
		for id := NodeID(1); id <= NodeID(n+2); id++ { // n+1, n+2: outside the set
			if rng.IntN(2) == 0 {
				streaming = append(streaming, id)
			}
		}
		if got, want := HintsWhole(c, streaming), everyQuorumStreams(c, streaming); got != want {
			t.Fatalf("HintsWhole(%v of %d, %v) = %v, reference says %v", set, c.AcceptQuorum, streaming, got, want)
		}
	}
}

func everyQuorumStreams(c Config, streaming []NodeID) bool {
	on := map[NodeID]bool{}
	for _, id := range streaming {
		on[id] = true
	}
	n := len(c.AcceptSet)
	for mask := 0; mask < 1<<n; mask++ {
		size, hit := 0, false
		for i := range n {
			if mask&(1<<i) != 0 {
				size++
				hit = hit || on[c.AcceptSet[i]]
			}
		}
		if size == c.AcceptQuorum && !hit {
			return false
		}
	}
	return true
}

func TestWatchDecide(t *testing.T) {
	live := func(v string, version uint64) State { return State{Value: []byte(v), Version: version} }
	tomb := func(version uint64) State { return State{Version: version, Deleted: true} }
	collected := State{Deleted: true}
	tests := []struct {
		name      string
		mark      WatchMark
		confirmed State
		deliver   bool
		ev        WatchEvent
		next      WatchMark
	}{
		{"first live state", WatchMark{}, live("a", 1), true, WatchEvent{live("a", 1), 0}, WatchMark{Version: 1}},
		{"next version", WatchMark{Version: 1}, live("b", 2), true, WatchEvent{live("b", 2), 1}, WatchMark{Version: 2}},
		{"a jump shows merging", WatchMark{Version: 2}, live("c", 7), true, WatchEvent{live("c", 7), 2}, WatchMark{Version: 7}},
		{"the same version again", WatchMark{Version: 7}, live("c", 7), false, WatchEvent{}, WatchMark{Version: 7}},
		{"an older version never", WatchMark{Version: 7}, live("b", 2), false, WatchEvent{}, WatchMark{Version: 7}},
		{"a tombstone is deleted with its version", WatchMark{Version: 7}, tomb(8), true, WatchEvent{tomb(8), 7}, WatchMark{Version: 8, Deleted: true}},
		{"a tombstone seen first", WatchMark{}, tomb(3), true, WatchEvent{tomb(3), 0}, WatchMark{Version: 3, Deleted: true}},
		{"collected after a delivered tombstone: nothing", WatchMark{Version: 8, Deleted: true}, State{}, false, WatchEvent{}, WatchMark{Version: 8, Deleted: true}},
		{"collected after a live state: deleted with no version", WatchMark{Version: 7}, State{}, true, WatchEvent{collected, 7}, WatchMark{Version: 7, Deleted: true}},
		{"absent to a watcher that saw nothing: nothing", WatchMark{}, State{}, false, WatchEvent{}, WatchMark{}},
		{"re-created after a collected tombstone", WatchMark{Version: 7, Deleted: true}, live("d", 9), true, WatchEvent{live("d", 9), 7}, WatchMark{Version: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, next, deliver := WatchDecide(tt.mark, tt.confirmed)
			if deliver != tt.deliver || !ev.State.Equal(tt.ev.State) || ev.PrevVersion != tt.ev.PrevVersion || next != tt.next {
				t.Fatalf("WatchDecide(%+v, %s) = %s prev %d, %+v, %v; want %s prev %d, %+v, %v",
					tt.mark, tt.confirmed, ev.State, ev.PrevVersion, next, deliver, tt.ev.State, tt.ev.PrevVersion, tt.next, tt.deliver)
			}
		})
	}
}

// TestWatchDecideQuick feeds a watcher random linearizable reads of a key's
// history, in order and with repeats and skips, and checks the guarantees
// the rule owns: every delivered state is one of the history's, versions
// only rise, every jump is flagged, and the last read's state, once it is
// read, has been delivered.
func TestWatchDecideQuick(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 2))
	for range 500 {
		// A history: live values and tombstones at rising versions, and
		// now and then a collected tombstone (absent).
		var history []State
		var version uint64
		for range 1 + rng.IntN(12) {
			version += 1 + uint64(rng.IntN(3))
			last := len(history) - 1
			switch {
			case last >= 0 && history[last].Deleted && history[last].Version > 0 && rng.IntN(2) == 0:
				history = append(history, State{}) // its tombstone was collected
			case rng.IntN(4) == 0:
				history = append(history, State{Version: version, Deleted: true})
			default:
				history = append(history, State{Value: []byte{byte(version)}, Version: version})
			}
		}
		var mark WatchMark
		var delivered []WatchEvent
		for i := 0; i < len(history); i += rng.IntN(3) { // reads repeat and skip states
			ev, next, ok := WatchDecide(mark, history[i])
			if next.Version < mark.Version {
				t.Fatalf("the mark went down from %d to %d", mark.Version, next.Version)
			}
			if ok {
				delivered = append(delivered, ev)
			}
			mark = next
		}
		final := history[len(history)-1]
		ev, mark2, ok := WatchDecide(mark, final)
		if ok {
			delivered = append(delivered, ev)
		}
		if _, _, again := WatchDecide(mark2, final); again {
			t.Fatalf("reading the last state twice delivered twice: %v", history)
		}
		if final.Version > 0 && mark2 != (WatchMark{Version: final.Version, Deleted: final.Deleted}) ||
			final.Version == 0 && mark2.Version > 0 && !mark2.Deleted {
			t.Fatalf("the last state %s did not arrive: the watcher is at %+v (history %v)", final, mark2, history)
		}
		checkWatchEvents(t, history, delivered)
	}
}

func checkWatchEvents(t *testing.T, history []State, delivered []WatchEvent) {
	t.Helper()
	var prev uint64
	for _, ev := range delivered {
		if ev.PrevVersion != prev {
			t.Fatalf("event %s says previous %d, the watcher was at %d", ev.State, ev.PrevVersion, prev)
		}
		if ev.State.Version == 0 {
			if !ev.State.Deleted {
				t.Fatalf("an event without a version that is not deleted")
			}
			continue
		}
		if ev.State.Version <= prev {
			t.Fatalf("version went from %d to %d", prev, ev.State.Version)
		}
		found := false
		for _, s := range history {
			found = found || s.Equal(ev.State)
		}
		if !found {
			t.Fatalf("delivered %s, not in the history %v", ev.State, history)
		}
		prev = ev.State.Version
	}
}

func TestWatchHintRules(t *testing.T) {
	tests := []struct {
		name    string
		mark    WatchMark
		hinted  State
		read    State
		newer   bool
		settled bool
	}{
		{"a newer hint read at its version", WatchMark{Version: 1}, State{Version: 2}, State{Version: 2}, true, true},
		{"a newer hint read later", WatchMark{Version: 1}, State{Version: 2}, State{Version: 5}, true, true},
		{"a hint not yet chosen", WatchMark{Version: 1}, State{Version: 2}, State{Version: 1}, true, false},
		{"an identity write's hint", WatchMark{Version: 2}, State{Version: 2}, State{Version: 2}, false, true},
		{"an old hint", WatchMark{Version: 4}, State{Version: 2}, State{Version: 4}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WatchHintNewer(tt.mark, tt.hinted); got != tt.newer {
				t.Errorf("WatchHintNewer = %v, want %v", got, tt.newer)
			}
			if got := WatchSettled(tt.hinted, tt.read); got != tt.settled {
				t.Errorf("WatchSettled = %v, want %v", got, tt.settled)
			}
		})
	}
}
