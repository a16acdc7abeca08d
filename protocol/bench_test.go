package protocol

import (
	"strconv"
	"testing"
)

// benchNet delivers every message at once to three acceptors kept in maps,
// so a benchmark measures the core's own work per change.
type benchNet struct {
	p    *Proposer
	regs [3]map[string]Register
	msgs []Message
}

func newBenchNet(b *testing.B) *benchNet {
	p, err := NewProposer(ProposerConfig{ID: 1, Acceptors: Majority(1, 1, 2, 3)})
	if err != nil {
		b.Fatal(err)
	}
	n := &benchNet{p: p}
	for i := range n.regs {
		n.regs[i] = make(map[string]Register)
	}
	return n
}

// change runs one change to completion and returns the number of results.
func (n *benchNet) change(id ReqID, key string, ch Change) int {
	n.p.Propose(id, key, ch)
	results := 0
	for {
		rd := n.p.Ready()
		results += len(rd.Results)
		if len(rd.Messages) == 0 {
			return results
		}
		n.msgs = append(n.msgs[:0], rd.Messages...)
		for _, m := range n.msgs {
			regs := n.regs[m.To-1]
			next, reply, _ := Step(regs[m.Key], m)
			regs[m.Key] = next
			n.p.Step(reply)
		}
	}
}

func BenchmarkChangeOneRoundTrip(b *testing.B) {
	n := newBenchNet(b)
	put := set("value")
	n.change(0, "hot", put) // fills the cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n.change(ReqID(i+1), "hot", put) != 1 {
			b.Fatal("change did not complete")
		}
	}
}

func BenchmarkChangeTwoPhase(b *testing.B) {
	n := newBenchNet(b)
	put := set("value")
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n.change(ReqID(i+1), keys[i], put) != 1 {
			b.Fatal("change did not complete")
		}
	}
}
