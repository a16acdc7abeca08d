package netlab

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is an operation of the read-modify-write loops.
type Kind uint8

const (
	// Get reads the key's value and version.
	Get Kind = iota + 1
	// PutIf writes Value only while the key has version Expect (0: absent):
	// caspaxos's PUT with If-Match, etcd's Txn on mod_revision.
	PutIf
	// Incr adds one to the key's integer (absent counts as 0) on the server.
	Incr
)

// Op is one operation as a client issued it.
type Op struct {
	Key    string
	Kind   Kind
	Expect uint64 // PutIf
	Value  int64  // PutIf
}

func (o Op) String() string {
	switch o.Kind {
	case PutIf:
		return fmt.Sprintf("PutIf(%s, v%d, %d)", o.Key, o.Expect, o.Value)
	case Incr:
		return fmt.Sprintf("Incr(%s)", o.Key)
	}
	return fmt.Sprintf("Get(%s)", o.Key)
}

// Status is how an operation ended.
type Status uint8

const (
	// OK: done; Out.Value and Out.Version are the key's after it.
	OK Status = iota + 1
	// NotFound: a Get found the key absent.
	NotFound
	// Mismatch: a PutIf's condition failed; Out.Version is the key's
	// current version (0: absent).
	Mismatch
	// NotApplied: refused before anything was sent (no quorum, no
	// connection): it never takes effect, and stays out of the history.
	NotApplied
	// Unknown: no answer; a write may or may not take effect.
	Unknown
)

// Out is an operation's result.
type Out struct {
	Status  Status
	Value   int64
	Version uint64
}

func (o Out) String() string {
	switch o.Status {
	case OK:
		return fmt.Sprintf("ok %d v%d", o.Value, o.Version)
	case NotFound:
		return "not found"
	case Mismatch:
		return fmt.Sprintf("mismatch (current v%d)", o.Version)
	case NotApplied:
		return "not applied"
	}
	return "unknown"
}

// register is the model's state of one key. When exact is false, version is
// only a strict lower bound (a write of unknown outcome took effect, with a
// version the client never saw); the next answer that shows it pins it.
type register struct {
	exists  bool
	value   int64
	version uint64
	exact   bool
}

// hasVersion reports whether the register may have version v, and the
// register with v pinned.
func (r register) hasVersion(v uint64) (register, bool) {
	if !r.exists {
		return r, v == 0
	}
	if r.exact {
		return r, r.version == v
	}
	if v > r.version {
		r.version, r.exact = v, true
		return r, true
	}
	return r, false
}

// newer reports whether v can follow the register's version.
func (r register) newer(v uint64) bool { return !r.exists || v > r.version }

func step(r register, in Op, out Out) []register {
	if out.Status == Unknown {
		return stepUnknown(r, in)
	}
	switch in.Kind {
	case Get:
		if out.Status == NotFound {
			return when(!r.exists, r)
		}
		p, ok := r.hasVersion(out.Version)
		return when(ok && r.exists && out.Status == OK && r.value == out.Value, p)
	case PutIf:
		if out.Status == Mismatch {
			p, ok := r.hasVersion(out.Version)
			return when(ok && out.Version != in.Expect, p)
		}
		_, ok := r.hasVersion(in.Expect)
		return when(ok && out.Status == OK && out.Version > in.Expect,
			register{exists: true, value: in.Value, version: out.Version, exact: true})
	case Incr:
		return when(out.Status == OK && out.Value == r.value+1 && r.newer(out.Version),
			register{exists: true, value: out.Value, version: out.Version, exact: true})
	}
	return nil
}

// stepUnknown: the operation took effect or did not.
func stepUnknown(r register, in Op) []register {
	next := []register{r}
	switch in.Kind {
	case PutIf:
		if _, ok := r.hasVersion(in.Expect); ok {
			next = append(next, register{exists: true, value: in.Value, version: in.Expect})
		}
	case Incr:
		next = append(next, register{exists: true, value: r.value + 1, version: r.version})
	}
	return next
}

func when(ok bool, r register) []register {
	if ok {
		return []register{r}
	}
	return nil
}

// Model is the per-key model of Porcupine for histories of Op and Out.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []interface{} { return []interface{}{register{exact: true}} },
		Step: func(state, in, out interface{}) []interface{} {
			var next []interface{}
			for _, r := range step(state.(register), in.(Op), out.(Out)) {
				next = append(next, r)
			}
			return next
		},
		DescribeOperation: func(in, out interface{}) string { return fmt.Sprintf("%v -> %v", in, out) },
		DescribeState:     func(s interface{}) string { return fmt.Sprintf("%+v", s.(register)) },
	}
	return nm.ToModel()
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(Op).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	slices.Sort(keys)
	out := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out
}

// Check checks a history for linearizability: "ok", "NOT LINEARIZABLE", or
// "unknown" when Porcupine found no verdict within timeout.
func Check(history []porcupine.Operation, timeout time.Duration) string {
	switch porcupine.CheckOperationsTimeout(Model(), history, timeout) {
	case porcupine.Ok:
		return "ok"
	case porcupine.Illegal:
		return "NOT LINEARIZABLE"
	}
	return "unknown"
}
