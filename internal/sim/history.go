package sim

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// The per-key model (model.go) for histories recorded outside the
// simulator: internal/chaos runs the real server components and checks
// what its clients saw with this same model, so that there is one
// definition of what a correct history is.

// HistoryOp is one operation of a recorded history: a client's kv
// operation, or a deletion GC's collection of a key's tombstone.
type HistoryOp struct {
	// Client names who issued it (Porcupine's ClientId).
	Client int
	// Op is the operation asked; for a GC only Op.Key matters.
	Op kv.Op
	// GC marks a deletion GC collection of Op.Key (PROTOCOL.md §9 step 4):
	// from before its first removal until after its last. Its register may
	// then read as the tombstone or as absent, as the model allows.
	GC bool
	// Call and Return are when it was issued and answered, in any one
	// monotonic unit. Return is math.MaxInt64 for an unknown outcome
	// (it may take effect at any later time).
	Call, Return int64
	// Unknown: the operation may or may not have taken effect
	// (kv.ErrUnknownOutcome). Err and State are then ignored.
	Unknown bool
	// Err is the operation's refusal (kv.ErrNotFound, ErrVersionMismatch,
	// ErrNotAnInteger, ErrOverflow) or nil, and State the state returned.
	Err   error
	State protocol.State
}

// ErrNotLinearizable is what CheckHistory's error wraps when the history
// has no linearization.
var ErrNotLinearizable = errors.New("caspaxos/sim: history not linearizable")

// CheckHistory checks every key's history with Porcupine, the simulator's
// model and its timeout rule: a search that finds no verdict within
// timeout is a failure. Its error explains the first key that fails.
func CheckHistory(history []HistoryOp, timeout time.Duration) error {
	ops := make([]porcupine.Operation, 0, len(history))
	for i, h := range history {
		op, err := porcupineOp(h)
		if err != nil {
			return fmt.Errorf("caspaxos/sim: history operation %d: %w", i, err)
		}
		ops = append(ops, op)
	}
	model := newModel()
	switch porcupine.CheckOperationsTimeout(model, ops, timeout) {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("caspaxos/sim: porcupine found no verdict within %v on %d operations", timeout, len(ops))
	}
	return fmt.Errorf("%w\n%s", ErrNotLinearizable, explain(model, ops, timeout))
}

// porcupineOp converts h to the model's input and output.
func porcupineOp(h HistoryOp) (porcupine.Operation, error) {
	in := input{key: h.Op.Key, value: string(h.Op.Value), version: h.Op.Version, delta: h.Op.Delta}
	kinds := map[kv.OpKind]opKind{kv.OpGet: opGet, kv.OpPut: opPut, kv.OpCreate: opCreate,
		kv.OpCompareAndSwap: opCAS, kv.OpDelete: opDelete, kv.OpIncrement: opIncrement}
	op := porcupine.Operation{ClientId: h.Client, Call: h.Call, Return: h.Return}
	switch {
	case h.GC:
		in.kind = opGC
		op.Output = output{outcome: outOK}
	case kinds[h.Op.Kind] == 0:
		return op, fmt.Errorf("unknown operation kind %v", h.Op.Kind)
	case h.Unknown:
		in.kind = kinds[h.Op.Kind]
		op.Output, op.Return = output{unknown: true}, math.MaxInt64
	default:
		in.kind = kinds[h.Op.Kind]
		oc, ok := classify(h.Err)
		if !ok {
			return op, fmt.Errorf("%v ended with an error no kv operation returns: %w", in, h.Err)
		}
		op.Output = output{outcome: oc, state: fromState(h.State)}
	}
	op.Input = in
	return op, nil
}
