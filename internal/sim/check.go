package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// finalChecks runs the end-of-run checks: invariant 2 on every key, then
// linearizability of every key's history.
func (s *sim) finalChecks() {
	s.inv.final(s)
	if s.failure == nil {
		s.checkListings()
	}
	if s.failure == nil {
		s.checkLinearizable()
	}
}

// history is the run's history for Porcupine. Aborted operations (not
// applied, never will be), reads without an answer (no effect) and lost
// operations that no accept ever carried off their node (op.unsent) are
// left out. Other unknown outcomes are possibly applied: their output is
// unknown (which the model accepts either way) and they return when the
// retirement rule closed them, or at the end of time.
func (s *sim) history() []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(s.w.ops)+len(s.gc.ops))
	for _, o := range s.gc.ops {
		ret := int64(math.MaxInt64) // not finished by the end of the run
		if o.ret > 0 {
			ret = int64(o.ret)
		}
		ops = append(ops, porcupine.Operation{ClientId: o.client, Input: o.in, Call: int64(o.call), Output: o.out, Return: ret})
	}
	for _, o := range s.w.ops {
		op := porcupine.Operation{ClientId: o.client, Input: o.in, Call: int64(o.call)}
		switch {
		case o.status == opAborted, o.status == opIDSettled, o.status == opUnknown && (o.in.kind == opGet || o.unsent):
			continue
		case o.status == opUnknown:
			op.Output, op.Return = output{unknown: true}, math.MaxInt64
			if o.closed {
				op.Return = int64(o.closeAt)
			}
		default:
			op.Output, op.Return = o.out, int64(o.ret)
		}
		ops = append(ops, op)
	}
	ops = append(ops, s.listHistory()...)
	return append(ops, s.watch.history...)
}

func (s *sim) checkLinearizable() {
	model := newModel()
	ops := s.history()
	switch porcupine.CheckOperationsTimeout(model, ops, s.opts.CheckTimeout) {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		s.fail("porcupine found no verdict within %v on %d operations: the history is too hard to check, which counts as a failure (fewer keys' worth of concurrency or fewer open unknowns would help)",
			s.opts.CheckTimeout, len(ops))
		return
	}
	s.fail("not linearizable\n%s", explain(model, ops, s.opts.CheckTimeout))
}

// explain finds the keys whose histories are not linearizable and shows,
// for the first, where the longest linearization found gets stuck.
func explain(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) string {
	var b strings.Builder
	for _, part := range partitionByKey(ops) {
		res, info := porcupine.CheckOperationsVerbose(model, part, timeout)
		if res == porcupine.Ok {
			continue
		}
		key := part[0].Input.(input).key
		fmt.Fprintf(&b, "key %q (%d operations): %s\n", key, len(part), res)
		if res == porcupine.Illegal {
			describeStuck(&b, model, part, info)
			return b.String()
		}
	}
	return b.String()
}

// describeStuck prints the end of the longest partial linearization of one
// key's history and the operations that could not follow it.
func describeStuck(b *strings.Builder, model porcupine.Model, part []porcupine.Operation, info porcupine.LinearizationInfo) {
	var longest []int
	for _, seq := range info.PartialLinearizations()[0] {
		if len(seq) > len(longest) {
			longest = seq
		}
	}
	in := make([]bool, len(part))
	fmt.Fprintf(b, "longest linearization: %d of %d operations; its last steps:\n", len(longest), len(part))
	states := model.Init()
	for i, id := range longest {
		in[id] = true
		_, states = model.Step(states, part[id].Input, part[id].Output)
		if i >= len(longest)-12 {
			fmt.Fprintf(b, "  %s  -> %s\n", describeOp(part[id]), model.DescribeState(states))
		}
	}
	var rest []int
	for id := range part {
		if !in[id] {
			rest = append(rest, id)
		}
	}
	slices.SortFunc(rest, func(x, y int) int { return int(part[x].Call - part[y].Call) })
	fmt.Fprintf(b, "operations that cannot come next (earliest first):\n")
	for _, id := range rest[:min(len(rest), 12)] {
		fmt.Fprintf(b, "  %s\n", describeOp(part[id]))
	}
}

func describeOp(op porcupine.Operation) string {
	ret := "inf"
	if op.Return != math.MaxInt64 {
		ret = fmt.Sprint(op.Return / 1000)
	}
	return fmt.Sprintf("[%dus..%sus] client %d: %v -> %v", op.Call/1000, ret, op.ClientId, op.Input, op.Output)
}
