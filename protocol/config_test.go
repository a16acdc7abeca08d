package protocol

import (
	"math/rand/v2"
	"testing"
)

// intersectByEnumeration is the dumb reference: it tries every prepare
// quorum against every accept quorum.
func intersectByEnumeration(p []NodeID, pq int, a []NodeID, aq int) bool {
	for _, qp := range subsets(p, pq) {
		for _, qa := range subsets(a, aq) {
			if !shares(qp, qa) {
				return false
			}
		}
	}
	return true
}

func subsets(set []NodeID, k int) [][]NodeID {
	var out [][]NodeID
	for mask := 0; mask < 1<<len(set); mask++ {
		var s []NodeID
		for i, id := range set {
			if mask&(1<<i) != 0 {
				s = append(s, id)
			}
		}
		if len(s) == k {
			out = append(out, s)
		}
	}
	return out
}

func shares(a, b []NodeID) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func TestQuorumsIntersectMatchesEnumeration(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomSet := func() []NodeID {
		var s []NodeID
		for id := NodeID(1); id <= 7; id++ {
			if rng.IntN(2) == 0 {
				s = append(s, id)
			}
		}
		if len(s) == 0 {
			s = append(s, NodeID(1+rng.IntN(7)))
		}
		return s
	}
	for i := 0; i < 2000; i++ {
		p, a := randomSet(), randomSet()
		pq, aq := 1+rng.IntN(len(p)), 1+rng.IntN(len(a))
		got := QuorumsIntersect(p, pq, a, aq)
		if want := intersectByEnumeration(p, pq, a, aq); got != want {
			t.Fatalf("QuorumsIntersect(%v, %d, %v, %d) = %v, enumeration says %v", p, pq, a, aq, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"majority of 3", Majority(1, 1, 2, 3), true},
		{"majority of 4", Majority(1, 1, 2, 3, 4), true},
		{"flexible 1+3 of 3", Config{PrepareSet: []NodeID{1, 2, 3}, PrepareQuorum: 1, AcceptSet: []NodeID{1, 2, 3}, AcceptQuorum: 3}, true},
		{"flexible 1+2 of 3", Config{PrepareSet: []NodeID{1, 2, 3}, PrepareQuorum: 1, AcceptSet: []NodeID{1, 2, 3}, AcceptQuorum: 2}, false},
		{"grow odd to even, accept F+2", Config{PrepareSet: []NodeID{1, 2, 3}, PrepareQuorum: 2, AcceptSet: []NodeID{1, 2, 3, 4}, AcceptQuorum: 3}, true},
		{"grow without raising accept quorum", Config{PrepareSet: []NodeID{1, 2, 3}, PrepareQuorum: 2, AcceptSet: []NodeID{1, 2, 3, 4}, AcceptQuorum: 2}, false},
		{"empty prepare set", Config{AcceptSet: []NodeID{1}, AcceptQuorum: 1}, false},
		{"quorum above set", Config{PrepareSet: []NodeID{1}, PrepareQuorum: 2, AcceptSet: []NodeID{1}, AcceptQuorum: 1}, false},
		{"node 0", Majority(1, 0, 1, 2), false},
		{"duplicate node", Majority(1, 1, 1, 2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestReadQuorum(t *testing.T) {
	for _, tt := range []struct {
		n, aq, want int
	}{{3, 2, 2}, {5, 3, 3}, {4, 3, 3}, {3, 3, 3}, {5, 2, 4}, {5, 4, 4}} {
		c := Config{AcceptSet: make([]NodeID, tt.n), AcceptQuorum: tt.aq}
		if got := c.ReadQuorum(); got != tt.want {
			t.Errorf("n=%d aq=%d: %d, want %d", tt.n, tt.aq, got, tt.want)
		}
	}
}
