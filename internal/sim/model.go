package sim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/anishathalye/porcupine"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// opKind is a client operation of package kv.
type opKind uint8

const (
	opGet opKind = iota + 1
	opPut
	opCreate
	opCAS
	opDelete // version 0: whatever the version
	opIncrement
	// opGC is a deletion GC run (PROTOCOL.md §9), from its identity write
	// until the tombstone is removed everywhere. Not a client operation.
	opGC
)

var opNames = [...]string{
	opGet: "Get", opPut: "Put", opCreate: "Create", opCAS: "CAS", opDelete: "Delete", opIncrement: "Increment", opGC: "GC",
}

// input is one operation, as the client issued it and the model replays it.
type input struct {
	key     string
	kind    opKind
	value   string
	version uint64 // CAS and Delete: the version expected (Delete: 0 = any)
	delta   int64  // Increment
	// rid, issued, attempt: a write's request ID, its issue time (the
	// client's clock, ms) and which attempt this is (idempotent.go).
	rid     string
	issued  int64
	attempt int
}

// change is the operation as the protocol runs it: kv's change function.
// Get has none (it is Proposer.Read).
func (in input) change() protocol.Change {
	switch in.kind {
	case opPut:
		return kv.Put([]byte(in.value))
	case opCreate:
		return kv.Create([]byte(in.value))
	case opCAS:
		return kv.CompareAndSwap(in.version, []byte(in.value))
	case opDelete:
		return kv.Delete(in.version)
	case opIncrement:
		return kv.Increment(in.delta)
	}
	return nil
}

// expects returns the specific version the operation compares with, if any.
// (Create, and CAS with version 0, only ask whether the key exists.)
func (in input) expects() (uint64, bool) {
	return in.version, (in.kind == opCAS || in.kind == opDelete) && in.version != 0
}

func (in input) String() string {
	if in.rid != "" {
		plain := in
		plain.rid = ""
		return fmt.Sprintf("%v [%s, attempt %d]", plain, in.rid, in.attempt)
	}
	switch in.kind {
	case opPut, opCreate:
		return fmt.Sprintf("%s(%q, %q)", opNames[in.kind], in.key, in.value)
	case opCAS:
		return fmt.Sprintf("CAS(%q, v%d, %q)", in.key, in.version, in.value)
	case opDelete:
		return fmt.Sprintf("Delete(%q, v%d)", in.key, in.version)
	case opIncrement:
		return fmt.Sprintf("Increment(%q, %+d)", in.key, in.delta)
	case opGC:
		return fmt.Sprintf("GC(%q)", in.key)
	}
	return fmt.Sprintf("Get(%q)", in.key)
}

// outcome is how an operation ended, as far as the model distinguishes.
type outcome uint8

const (
	outOK outcome = iota + 1
	outNotFound
	outMismatch
	outNotInteger
	outOverflow
)

var outcomeNames = [...]string{
	outOK: "ok", outNotFound: "not-found", outMismatch: "mismatch", outNotInteger: "not-an-integer", outOverflow: "overflow",
}

// classify maps a kv change's error to an outcome; ok is false for an
// error that no kv operation returns.
func classify(err error) (o outcome, ok bool) {
	switch {
	case err == nil:
		return outOK, true
	case errors.Is(err, kv.ErrNotFound):
		return outNotFound, true
	case errors.Is(err, kv.ErrVersionMismatch):
		return outMismatch, true
	case errors.Is(err, kv.ErrNotAnInteger):
		return outNotInteger, true
	case errors.Is(err, kv.ErrOverflow):
		return outOverflow, true
	}
	return 0, false
}

// register is the model's state of one key: exists, value and version.
//
// The model cannot predict a key's first version: the protocol gives a
// register with no history max(1, ballot counter), and ballot counters are
// not the model's to know. Every later write (a delete and a re-create
// included) adds exactly 1. So after a first write whose result the model
// has not seen (an unknown outcome), version is only a lower bound and
// pinned is false; the next output that shows a version pins it. Outputs
// always carry a pinned register.
//
// Deletion GC removes a tombstone from every acceptor, one by one, so a
// deleted key that GC has run on (collected) may show as the tombstone or as
// absent (version 0) for a while, and the next write gives it a version
// above the tombstone's: one more if it sees the tombstone, or a first
// version if it finds the key absent, which the GC's fast-forward puts above
// the tombstone's.
type register struct {
	exists    bool
	value     string
	version   uint64
	pinned    bool
	collected bool
}

func fromState(s protocol.State) register {
	return register{exists: s.Exists(), value: string(s.Value), version: s.Version, pinned: true}
}

func (r register) state() protocol.State {
	s := protocol.State{Version: r.version, Deleted: !r.exists && r.version > 0}
	if r.exists {
		s.Value = []byte(r.value)
	}
	return s
}

func (r register) String() string {
	v := fmt.Sprintf("v%d", r.version)
	if !r.pinned {
		v = fmt.Sprintf("v>=%d", r.version)
	}
	switch {
	case r.exists:
		return fmt.Sprintf("%q@%s", r.value, v)
	case r.version == 0:
		return "absent"
	case r.collected:
		return "collected tombstone@" + v
	}
	return "tombstone@" + v
}

// output is what an operation returned: an outcome and the register the
// protocol reported (after a write, the new one; after a refusal or a read,
// the one the operation saw). unknown: the operation may or may not have
// taken effect (ErrUnknownOutcome, or never answered).
type output struct {
	unknown bool
	outcome outcome
	state   register
}

func (o output) String() string {
	if o.unknown {
		return "unknown"
	}
	return fmt.Sprintf("%s %s", outcomeNames[o.outcome], o.state)
}

// apply runs in on a register whose version is pre.version (pinned or a
// lower bound, as pre says) and returns the register after it. A first
// write takes firstVersion if it is not 0, else an unpinned version >= 1.
func apply(pre register, in input, firstVersion uint64) (register, outcome) {
	switch {
	case in.kind == opGet:
		return pre, outOK
	case in.kind == opGC:
		if !pre.exists && pre.version > 0 {
			pre.collected = true
		}
		return pre, outOK
	}
	w, err := in.change()(pre.state())
	if err != nil {
		o, _ := classify(err)
		return pre, o
	}
	next := func() register {
		if pre.version == 0 {
			if firstVersion == 0 {
				return register{version: 1}
			}
			return register{version: firstVersion, pinned: true}
		}
		return register{version: pre.version + 1, pinned: pre.pinned}
	}
	switch {
	case w.Kind == protocol.WriteSet:
		r := next()
		r.exists, r.value = true, string(w.Value)
		return r, outOK
	case w.Kind == protocol.WriteDelete && pre.exists:
		return next(), outOK
	}
	return pre, outOK
}

// stepKnown replays an operation whose output is known: the register must
// have been such that the operation returns exactly out.
func stepKnown(s register, in input, out output) (register, bool) {
	if in.kind == opGC {
		post, _ := apply(s, in, 0)
		return post, true
	}
	if s.collected {
		return stepCollected(s, in, out)
	}
	wrote := out.outcome == outOK && in.kind != opGet && in.kind != opGC
	pre := s
	if !(wrote && s.version == 0) {
		// The output shows the version the operation found (one less
		// than the one it wrote); it must fit what the model knows.
		v := out.state.version
		if wrote {
			v--
		}
		if (s.pinned && v != s.version) || (!s.pinned && v < s.version) {
			return register{}, false
		}
		pre.version, pre.pinned = v, true
	}
	post, o := apply(pre, in, out.state.version)
	if o != out.outcome || post != out.state {
		return register{}, false
	}
	return post, true
}

// stepCollected is stepKnown on a collected tombstone s: the operation
// found either the tombstone or nothing at all.
func stepCollected(s register, in input, out output) (register, bool) {
	tomb := s
	tomb.collected = false
	for _, pre := range []register{tomb, {pinned: true}} {
		post, ok := stepKnown(pre, in, out)
		if !ok {
			continue
		}
		if post == pre {
			return s, true // read or refused: still either
		}
		if pre.version == 0 && (post.version <= s.version) {
			continue // a first version not past the tombstone's
		}
		return post, true
	}
	return register{}, false
}

// stepUnknown lists the registers an operation with an unknown outcome may
// leave: s itself (not applied, or not yet), or s with the operation applied.
func stepUnknown(s register, in input) []register {
	next := []register{s}
	if in.kind == opGet {
		return next
	}
	if s.collected {
		// Applied, it wrote above the tombstone's version: from the
		// tombstone one more, from nothing a first version past it.
		tomb := s
		tomb.collected = false
		if post, _ := apply(tomb, in, 0); post != tomb {
			post.pinned = false
			return append(next, post)
		}
		return next
	}
	if x, ok := in.expects(); ok && !s.pinned && s.exists && x >= s.version {
		// The version is only a lower bound: it may be x (the
		// condition holds) or not (a refusal, which leaves s).
		at := s
		at.version, at.pinned = x, true
		post, _ := apply(at, in, 0)
		return append(next, post)
	}
	post, _ := apply(s, in, 0)
	return append(next, post)
}

// newModel returns the per-key register model for Porcupine.
func newModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []interface{} { return []interface{}{register{pinned: true}} },
		Step: func(state, in, out interface{}) []interface{} {
			s, i, o := state.(register), in.(input), out.(output)
			if o.unknown {
				var next []interface{}
				for _, r := range stepUnknown(s, i) {
					next = append(next, r)
				}
				return next
			}
			if r, ok := stepKnown(s, i, o); ok {
				return []interface{}{r}
			}
			return nil
		},
		Equal:             func(a, b interface{}) bool { return a.(register) == b.(register) },
		Hash:              hashRegister,
		DescribeOperation: func(in, out interface{}) string { return fmt.Sprintf("%v -> %v", in, out) },
		DescribeState:     func(s interface{}) string { return s.(register).String() },
	}
	return nm.ToModel()
}

func hashRegister(s interface{}) uint64 {
	r := s.(register)
	h := fnv.New64a()
	h.Write([]byte(r.value))
	return h.Sum64() ^ r.version<<3 ^ boolBit(r.collected)<<2 ^ boolBit(r.exists)<<1 ^ boolBit(r.pinned)
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// partitionByKey splits a history into one history per key, in key order.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string][]porcupine.Operation)
	for _, op := range history {
		k := op.Input.(input).key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		parts[i] = byKey[k]
	}
	return parts
}
