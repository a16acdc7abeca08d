package protocol

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// ids returns 10, 20, ..., n*10: acceptors with room between them, so that
// a test can add one in the middle and see the sets come out sorted.
func ids(n int) []NodeID {
	out := make([]NodeID, n)
	for i := range out {
		out[i] = NodeID(10 * (i + 1))
	}
	return out
}

// step is a PlanStep in a table row.
func step(v uint64, p []NodeID, pq int, a []NodeID, aq int, fences, catchUp bool) PlanStep {
	return PlanStep{Config: Config{Version: v, PrepareSet: p, PrepareQuorum: pq, AcceptSet: a, AcceptQuorum: aq}, CopyFences: fences, CatchUp: catchUp}
}

// plus15 is ids(n) with 15 added, sorted; minus20 is ids(n) without 20.
func plus15(n int) []NodeID { return slices.Sorted(slices.Values(append(ids(n), 15))) }

func minus20(n int) []NodeID {
	return slices.DeleteFunc(ids(n), func(id NodeID) bool { return id == 20 })
}

func TestPlanAdd(t *testing.T) {
	const fences, catchUp = true, true
	tests := []struct {
		n    int
		want []PlanStep
	}{
		{1, []PlanStep{
			step(6, ids(1), 1, plus15(1), 2, fences, catchUp),
			step(7, plus15(1), 2, plus15(1), 2, false, false),
		}},
		{2, []PlanStep{step(6, plus15(2), 2, plus15(2), 2, fences, false)}},
		{3, []PlanStep{
			step(6, ids(3), 2, plus15(3), 3, fences, catchUp),
			step(7, plus15(3), 3, plus15(3), 3, false, false),
		}},
		{4, []PlanStep{step(6, plus15(4), 3, plus15(4), 3, fences, false)}},
		{5, []PlanStep{
			step(6, ids(5), 3, plus15(5), 4, fences, catchUp),
			step(7, plus15(5), 4, plus15(5), 4, false, false),
		}},
		{6, []PlanStep{step(6, plus15(6), 4, plus15(6), 4, fences, false)}},
		{7, []PlanStep{
			step(6, ids(7), 4, plus15(7), 5, fences, catchUp),
			step(7, plus15(7), 5, plus15(7), 5, false, false),
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("to %d", tt.n), func(t *testing.T) {
			cur := Majority(5, ids(tt.n)...)
			got, err := PlanAdd(cur, 15)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("PlanAdd(%+v, 15) =\n%+v\nwant\n%+v", cur, got, tt.want)
			}
			if !reflect.DeepEqual(cur, Majority(5, ids(tt.n)...)) {
				t.Fatalf("PlanAdd changed its argument: %+v", cur)
			}
		})
	}
}

func TestPlanRemove(t *testing.T) {
	const catchUp = true
	tests := []struct {
		n    int
		want []PlanStep
	}{
		{2, []PlanStep{
			step(6, minus20(2), 1, ids(2), 2, false, false),
			step(7, minus20(2), 1, minus20(2), 1, false, false),
		}},
		{3, []PlanStep{step(6, minus20(3), 2, minus20(3), 2, false, catchUp)}},
		{4, []PlanStep{
			step(6, minus20(4), 2, ids(4), 3, false, false),
			step(7, minus20(4), 2, minus20(4), 2, false, false),
		}},
		{5, []PlanStep{step(6, minus20(5), 3, minus20(5), 3, false, catchUp)}},
		{6, []PlanStep{
			step(6, minus20(6), 3, ids(6), 4, false, false),
			step(7, minus20(6), 3, minus20(6), 3, false, false),
		}},
		{7, []PlanStep{step(6, minus20(7), 4, minus20(7), 4, false, catchUp)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("from %d", tt.n), func(t *testing.T) {
			cur := Majority(5, ids(tt.n)...)
			got, err := PlanRemove(cur, 20)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("PlanRemove(%+v, 20) =\n%+v\nwant\n%+v", cur, got, tt.want)
			}
		})
	}
}

func TestPlanRefused(t *testing.T) {
	grown := Majority(5, 1, 2, 3)
	grown.AcceptSet = []NodeID{1, 2, 3, 4}
	grown.AcceptQuorum = 3
	flexible := Majority(5, 1, 2, 3)
	flexible.PrepareQuorum, flexible.AcceptQuorum = 1, 3
	top := Majority(math.MaxUint64-1, 1, 2, 3)
	tests := []struct {
		name      string
		plan      func() ([]PlanStep, error)
		notSteady bool
	}{
		{"add to a change in progress", func() ([]PlanStep, error) { return PlanAdd(grown, 5) }, true},
		{"remove from a change in progress", func() ([]PlanStep, error) { return PlanRemove(grown, 3) }, true},
		{"add to non-majority quorums", func() ([]PlanStep, error) { return PlanAdd(flexible, 5) }, true},
		{"add to an invalid configuration", func() ([]PlanStep, error) { return PlanAdd(Majority(5, 1, 1, 2), 5) }, false},
		{"add to an empty configuration", func() ([]PlanStep, error) { return PlanAdd(Config{Version: 5}, 5) }, false},
		{"add node 0", func() ([]PlanStep, error) { return PlanAdd(Majority(5, 1, 2, 3), 0) }, false},
		{"add a member", func() ([]PlanStep, error) { return PlanAdd(Majority(5, 1, 2, 3), 2) }, false},
		{"remove a stranger", func() ([]PlanStep, error) { return PlanRemove(Majority(5, 1, 2, 3), 4) }, false},
		{"remove the last acceptor", func() ([]PlanStep, error) { return PlanRemove(Majority(5, 1), 1) }, false},
		{"add at the highest versions", func() ([]PlanStep, error) { return PlanAdd(top, 4) }, false},
		{"remove at the highest versions", func() ([]PlanStep, error) { return PlanRemove(top, 3) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := tt.plan()
			if err == nil {
				t.Fatalf("planned %+v, want an error", steps)
			}
			if got := errors.Is(err, ErrNotSteady); got != tt.notSteady {
				t.Fatalf("error %v: is ErrNotSteady = %v, want %v", err, got, tt.notSteady)
			}
		})
	}
	// The last version that leaves room for two.
	if _, err := PlanAdd(Majority(math.MaxUint64-2, 1, 2, 3), 4); err != nil {
		t.Fatalf("add at version 2^64-3: %v", err)
	}
}

func TestConfigSteady(t *testing.T) {
	reordered := Majority(1, 1, 2, 3)
	reordered.AcceptSet = []NodeID{3, 1, 2}
	other := Majority(1, 1, 2, 3)
	other.AcceptSet = []NodeID{1, 2, 4}
	low := Majority(1, 1, 2, 3, 4)
	low.PrepareQuorum = 2
	for _, tt := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"majority of 1", Majority(1, 1), true},
		{"majority of 4", Majority(1, 1, 2, 3, 4), true},
		{"sets in another order", reordered, true},
		{"different sets", other, false},
		{"prepare quorum below majority", low, false},
	} {
		if got := tt.cfg.Steady(); got != tt.want {
			t.Errorf("%s: Steady() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckPlanRefusesAJumpWithoutOverlap(t *testing.T) {
	cur := Majority(1, 1, 2, 3)
	// Valid alone (2 + 3 > 4), but a prepare quorum {3, 4} misses the
	// accept quorum {1, 2} an attempt under cur may still be using.
	jump := step(2, []NodeID{1, 2, 3, 4}, 2, []NodeID{1, 2, 3, 4}, 3, false, false)
	if _, err := checkPlan(cur, []PlanStep{jump}); err == nil {
		t.Fatal("checkPlan took a step whose prepare quorums miss the accept quorums before it")
	}
	invalid := step(2, []NodeID{1, 2, 3, 4}, 2, []NodeID{1, 2, 3, 4}, 2, false, false)
	if _, err := checkPlan(cur, []PlanStep{invalid}); err == nil {
		t.Fatal("checkPlan took a step whose own quorums can be disjoint")
	}
}

// planModel is the dumb reference for a run of membership changes: what
// every configuration of the run must satisfy, by enumeration of quorums.
// A key left alone since it was last written lies on some accept quorum of
// the configuration it was written with, or, once a catch-up rewrote it,
// of that catch-up's; so every prepare quorum of a step must meet every
// accept quorum of each configuration since the last catch-up, the step's
// own included.
type planModel struct {
	cur     Config
	history []Config // accept configurations since the last catch-up
}

// take checks the steps of one plan from m.cur and moves the model through
// them. It returns what is wrong, or "".
func (m *planModel) take(steps []PlanStep) string {
	prev := m.cur
	for i, s := range steps {
		c := s.Config
		if c.Version != m.cur.Version+uint64(i)+1 {
			return fmt.Sprintf("step %d has version %d after %d", i, c.Version, prev.Version)
		}
		if !intersectByEnumeration(c.PrepareSet, c.PrepareQuorum, prev.AcceptSet, prev.AcceptQuorum) ||
			!intersectByEnumeration(prev.PrepareSet, prev.PrepareQuorum, c.AcceptSet, c.AcceptQuorum) {
			return fmt.Sprintf("step %d (%+v) does not overlap the one before (%+v)", i, c, prev)
		}
		m.history = append(m.history, c)
		for _, h := range m.history {
			if !intersectByEnumeration(c.PrepareSet, c.PrepareQuorum, h.AcceptSet, h.AcceptQuorum) {
				return fmt.Sprintf("step %d (%+v) can prepare without meeting a key written with %+v", i, c, h)
			}
		}
		if s.CatchUp {
			m.history = []Config{c}
		}
		prev = c
	}
	m.cur = prev
	return ""
}

// randomPlans runs changes at random, from random sets of 1 to 7 acceptors
// between sizes 1 and 7 and with fresh IDs for each added acceptor (as a
// replacement must have: an acceptor added back is empty), through the
// model. mutate may change each plan before the model takes it. It returns
// the first thing the model finds wrong, or "".
func randomPlans(t *testing.T, seed uint64, mutate func([]PlanStep)) string {
	rng := rand.New(rand.NewPCG(seed, 17))
	used := make(map[NodeID]bool)
	fresh := func() NodeID {
		for {
			if id := NodeID(1 + rng.IntN(1000)); !used[id] {
				used[id] = true
				return id
			}
		}
	}
	var first []NodeID
	for range 1 + rng.IntN(7) {
		first = append(first, fresh())
	}
	m := planModel{cur: Majority(1, first...)}
	m.history = []Config{m.cur}
	for range 40 {
		n := len(m.cur.AcceptSet)
		grow := n == 1 || (n < 7 && rng.IntN(2) == 0)
		want := slices.Clone(m.cur.AcceptSet)
		var steps []PlanStep
		var err error
		if grow {
			x := fresh()
			want = append(want, x)
			steps, err = PlanAdd(m.cur, x)
			if err == nil && !steps[0].CopyFences {
				return fmt.Sprintf("adding %d: the first step, which makes it an acceptor, copies no fences", x)
			}
		} else {
			x := want[rng.IntN(n)]
			want = slices.DeleteFunc(want, func(id NodeID) bool { return id == x })
			steps, err = PlanRemove(m.cur, x)
		}
		if err != nil {
			t.Fatalf("seed %d: planning from %+v: %v", seed, m.cur, err)
		}
		for i, s := range steps {
			if s.CopyFences && i > 0 {
				return fmt.Sprintf("step %d copies fences after the new acceptor is in a set", i)
			}
		}
		if mutate != nil {
			mutate(steps)
		}
		if what := m.take(steps); what != "" {
			return what
		}
		slices.Sort(want)
		if got := slices.Sorted(slices.Values(m.cur.AcceptSet)); !m.cur.Steady() || !slices.Equal(got, want) {
			return fmt.Sprintf("the plan ends in %+v, want a steady configuration of %v", m.cur, want)
		}
	}
	return ""
}

// TestPlansAgainstReference runs random sequences of changes through the
// reference: every step overlaps the one before it, and no step can
// prepare without meeting where a key left alone lies.
func TestPlansAgainstReference(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		if what := randomPlans(t, seed, nil); what != "" {
			t.Fatalf("seed %d: %s", seed, what)
		}
	}
}

// TestReferenceCatchesPlansWithoutCatchUp: with every catch-up dropped, the
// reference finds a step that can prepare without meeting a key written
// before an odd-to-even add (the simulator's grow-without-catch-up), so
// the reference is not vacuous.
func TestReferenceCatchesPlansWithoutCatchUp(t *testing.T) {
	noCatchUp := func(steps []PlanStep) {
		for i := range steps {
			steps[i].CatchUp = false
		}
	}
	for seed := uint64(1); seed <= 100; seed++ {
		if what := randomPlans(t, seed, noCatchUp); what != "" {
			t.Logf("seed %d: %s", seed, what)
			return
		}
	}
	t.Fatal("100 random runs without catch-up passed the reference")
}

func TestMergeJoinFences(t *testing.T) {
	tests := []struct {
		name string
		in   []JoinFences
		want JoinFences
	}{
		{"none", nil, JoinFences{Ages: map[NodeID]uint64{}}},
		{"one with nil ages", []JoinFences{{Counter: 7}}, JoinFences{Ages: map[NodeID]uint64{}, Counter: 7}},
		{"one", []JoinFences{{Ages: map[NodeID]uint64{1: 3, 2: 5}, Counter: 9}}, JoinFences{Ages: map[NodeID]uint64{1: 3, 2: 5}, Counter: 9}},
		{
			"highest age of each proposer, highest counter",
			[]JoinFences{
				{Ages: map[NodeID]uint64{1: 3, 2: 8}, Counter: 4},
				{Ages: map[NodeID]uint64{1: 6, 3: 1}, Counter: 11},
				{Ages: map[NodeID]uint64{2: 2}, Counter: 10},
			},
			JoinFences{Ages: map[NodeID]uint64{1: 6, 2: 8, 3: 1}, Counter: 11},
		},
		{
			"an answer with no ages lowers nothing",
			[]JoinFences{{Ages: map[NodeID]uint64{1: 6}, Counter: 11}, {}},
			JoinFences{Ages: map[NodeID]uint64{1: 6}, Counter: 11},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeJoinFences(tt.in...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("MergeJoinFences(%v) = %v, want %v", tt.in, got, tt.want)
			}
			// The result is the caller's: changing it changes no input.
			before := fmt.Sprint(tt.in)
			for id := range got.Ages {
				got.Ages[id]++
			}
			got.Ages[99] = 1
			if after := fmt.Sprint(tt.in); after != before {
				t.Fatalf("changing the result changed the inputs: %s, were %s", after, before)
			}
		})
	}
}
