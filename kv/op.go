package kv

import (
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
)

// OpKind names an operation of the store.
type OpKind uint8

const (
	OpGet OpKind = iota + 1
	OpPut
	OpCreate
	OpCompareAndSwap
	OpDelete
	OpIncrement
	// OpRestore stores Value at a version of at least Version (Restore):
	// what `caspaxos snapshot restore` writes, admin only.
	OpRestore
)

var opNames = [...]string{
	OpGet: "get", OpPut: "put", OpCreate: "create", OpCompareAndSwap: "cas", OpDelete: "delete", OpIncrement: "incr", OpRestore: "restore",
}

func (k OpKind) String() string {
	if int(k) < len(opNames) && opNames[k] != "" {
		return opNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Op is an operation as data, so that it can cross the network (a node
// forwards it to the key's home proposer) and be checked before it runs.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // OpPut, OpCreate, OpCompareAndSwap
	// Version is the expected version of OpCompareAndSwap (0: absent) and
	// of OpDelete (0: any), and the least version OpRestore writes.
	Version uint64
	Delta   int64 // OpIncrement
}

// Validate checks the operation against the limits before anything is sent.
func (o Op) Validate(l Limits) error {
	if o.Kind < OpGet || o.Kind > OpRestore {
		return fmt.Errorf("caspaxos: unknown operation %d", o.Kind)
	}
	if err := l.CheckKey(o.Key); err != nil {
		return err
	}
	return l.CheckValue(o.Value)
}

// Change returns the operation's change function; nil for OpGet, which is a
// read, not a change.
func (o Op) Change() protocol.Change {
	switch o.Kind {
	case OpPut:
		return Put(o.Value)
	case OpCreate:
		return Create(o.Value)
	case OpCompareAndSwap:
		return CompareAndSwap(o.Version, o.Value)
	case OpDelete:
		return Delete(o.Version)
	case OpIncrement:
		return Increment(o.Delta)
	case OpRestore:
		return Restore(o.Value, o.Version)
	default:
		return nil
	}
}
