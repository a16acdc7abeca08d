package e2e

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// A per-key Porcupine model of the operations the membership workload
// issues: Get, unconditional Put, CompareAndSwap (version 0: create) and
// Increment by one. netlab's model has no unconditional Put; this one is
// the same idea with it added.

type regKind uint8

const (
	regGet regKind = iota + 1
	regPut
	regCAS
	regIncr
)

// regIn is an operation as a client issued it.
type regIn struct {
	Key    string
	Kind   regKind
	Expect uint64 // regCAS
	Value  int64  // regPut, regCAS
}

func (in regIn) String() string {
	switch in.Kind {
	case regPut:
		return fmt.Sprintf("put(%s, %d)", in.Key, in.Value)
	case regCAS:
		return fmt.Sprintf("cas(%s, v%d, %d)", in.Key, in.Expect, in.Value)
	case regIncr:
		return fmt.Sprintf("incr(%s)", in.Key)
	}
	return fmt.Sprintf("get(%s)", in.Key)
}

type regStatus uint8

const (
	regOK       regStatus = iota + 1 // Value and Version are the key's after the operation
	regNotFound                      // a get found the key absent
	regMismatch                      // a cas failed; Version is the key's current one (0: absent)
	regUnknown                       // no answer: a write may or may not take effect
)

// regOut is an operation's result.
type regOut struct {
	Status  regStatus
	Value   int64
	Version uint64
}

func (o regOut) String() string {
	switch o.Status {
	case regOK:
		return fmt.Sprintf("ok %d v%d", o.Value, o.Version)
	case regNotFound:
		return "not found"
	case regMismatch:
		return fmt.Sprintf("mismatch (v%d)", o.Version)
	}
	return "unknown"
}

// regState is one key. Versions only grow; when exact is false, version is
// a strict lower bound (a write of unknown outcome took effect with a
// version nobody saw), pinned by the next answer that shows one.
type regState struct {
	exists  bool
	value   int64
	version uint64
	exact   bool
}

// pin reports whether the key may have version v, and the state with v pinned.
func (r regState) pin(v uint64) (regState, bool) {
	switch {
	case !r.exists:
		return r, v == 0
	case r.exact:
		return r, r.version == v
	case v > r.version:
		r.version, r.exact = v, true
		return r, true
	}
	return r, false
}

// newer reports whether a write may have produced version v from r.
func (r regState) newer(v uint64) bool { return v > r.version }

func regStep(r regState, in regIn, out regOut) []regState {
	if out.Status == regUnknown {
		return regStepUnknown(r, in)
	}
	written := regState{exists: true, value: in.Value, version: out.Version, exact: true}
	switch in.Kind {
	case regGet:
		if out.Status == regNotFound {
			return only(!r.exists, r)
		}
		p, ok := r.pin(out.Version)
		return only(ok && r.exists && r.value == out.Value, p)
	case regPut:
		return only(out.Status == regOK && r.newer(out.Version), written)
	case regCAS:
		if out.Status == regMismatch {
			p, ok := r.pin(out.Version)
			return only(ok && out.Version != in.Expect, p)
		}
		_, ok := r.pin(in.Expect)
		return only(ok && out.Status == regOK && out.Version > in.Expect && r.newer(out.Version), written)
	case regIncr:
		written.value = r.value + 1
		return only(out.Status == regOK && out.Value == written.value && r.newer(out.Version), written)
	}
	return nil
}

// regStepUnknown: the write took effect, or it did not.
func regStepUnknown(r regState, in regIn) []regState {
	next := []regState{r}
	took := regState{exists: true, value: in.Value, version: r.version}
	switch in.Kind {
	case regPut:
		next = append(next, took)
	case regCAS:
		if _, ok := r.pin(in.Expect); ok {
			next = append(next, took)
		}
	case regIncr:
		took.value = r.value + 1
		next = append(next, took)
	}
	return next
}

func only(ok bool, r regState) []regState {
	if ok {
		return []regState{r}
	}
	return nil
}

func registerModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Input.(regIn).Key
				byKey[k] = append(byKey[k], op)
			}
			var out [][]porcupine.Operation
			for _, k := range slices.Sorted(maps.Keys(byKey)) {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() []interface{} { return []interface{}{regState{exact: true}} },
		Step: func(state, in, out interface{}) []interface{} {
			var next []interface{}
			for _, r := range regStep(state.(regState), in.(regIn), out.(regOut)) {
				next = append(next, r)
			}
			return next
		},
		DescribeOperation: func(in, out interface{}) string { return fmt.Sprintf("%v -> %v", in, out) },
		DescribeState:     func(s interface{}) string { return fmt.Sprintf("%+v", s.(regState)) },
	}
	return nm.ToModel()
}

// checkRegisters checks a history: porcupine.Ok, Illegal, or Unknown when
// no verdict came within timeout.
func checkRegisters(history []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(registerModel(), history, timeout)
}

// TestRegisterModel: the model refuses a lost write and a stale read, and
// lets a write of unknown outcome take effect late or never.
func TestRegisterModel(t *testing.T) {
	op := func(client int, call, ret int64, in regIn, out regOut) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	put := regIn{Key: "k", Kind: regPut, Value: 7}
	get := regIn{Key: "k", Kind: regGet}
	incr := regIn{Key: "k", Kind: regIncr}
	cases := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"stale read", []porcupine.Operation{
			op(0, 0, 1, put, regOut{Status: regOK, Value: 7, Version: 1}),
			op(1, 2, 3, get, regOut{Status: regNotFound}),
		}, porcupine.Illegal},
		{"lost increment", []porcupine.Operation{
			op(0, 0, 1, incr, regOut{Status: regOK, Value: 1, Version: 1}),
			op(0, 2, 3, incr, regOut{Status: regOK, Value: 1, Version: 2}),
		}, porcupine.Illegal},
		{"unknown put taking effect late", []porcupine.Operation{
			op(0, 0, math.MaxInt64, put, regOut{Status: regUnknown}),
			op(1, 2, 3, get, regOut{Status: regNotFound}),
			op(1, 4, 5, get, regOut{Status: regOK, Value: 7, Version: 4}),
			op(1, 6, 7, regIn{Key: "k", Kind: regCAS, Expect: 4, Value: 8}, regOut{Status: regOK, Value: 8, Version: 5}),
		}, porcupine.Ok},
		{"unknown increment never taking effect", []porcupine.Operation{
			op(0, 0, math.MaxInt64, incr, regOut{Status: regUnknown}),
			op(1, 2, 3, incr, regOut{Status: regOK, Value: 1, Version: 1}),
		}, porcupine.Ok},
		{"cas on a version overtaken", []porcupine.Operation{
			op(0, 0, 1, put, regOut{Status: regOK, Value: 7, Version: 3}),
			op(1, 2, 3, regIn{Key: "k", Kind: regCAS, Expect: 2, Value: 8}, regOut{Status: regOK, Value: 8, Version: 4}),
		}, porcupine.Illegal},
	}
	for _, tc := range cases {
		if got := checkRegisters(tc.history, 5*time.Second); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
