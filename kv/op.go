package kv

import (
	"fmt"
	"time"

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
	// OpOutcome is an outcome query: was the write of RequestID applied?
	// A change that never changes the value (kv.OutcomeQuery).
	OpOutcome
	// Lease operations (lease.go) on Key = LeaseKey(id): grant (Delta is
	// the TTL in milliseconds), keep-alive, revoke, and expiry, which
	// changes nothing unless the lease may expire at the proposer's time.
	OpLeaseGrant
	OpLeaseKeepAlive
	OpLeaseRevoke
	OpLeaseExpire
	// Lock operations (lock.go) on Key = LockKey(name): acquire (Value is
	// the wanted Lock), release, break (Version is the state judged) and
	// proclaim (Value is the new value); Delta carries the lease's ID.
	OpLockAcquire
	OpLockRelease
	OpLockBreak
	OpLockProclaim
	// OpPutFlags and OpCompareAndSwapFlags are OpPut and OpCompareAndSwap
	// that also store Flags, keeping the key's lock attributes (flags.go).
	OpPutFlags
	OpCompareAndSwapFlags
	// OpKeyAcquire and OpKeyRelease acquire and release Key for Lease,
	// storing Value and Flags (keylock.go: Consul's acquire and release);
	// Version, for a release, is the version the key must have (0: any).
	OpKeyAcquire
	OpKeyRelease
	// OpDeleteAttached deletes Key if it is attached to lease Lease, and
	// otherwise changes nothing (DeleteAttached): how a reaper deletes
	// the keys of a lease that ended. Not a client's operation.
	OpDeleteAttached
)

var opNames = [...]string{
	OpGet: "get", OpPut: "put", OpCreate: "create", OpCompareAndSwap: "cas", OpDelete: "delete", OpIncrement: "incr", OpRestore: "restore", OpOutcome: "outcome",
	OpLeaseGrant: "lease-grant", OpLeaseKeepAlive: "lease-keepalive", OpLeaseRevoke: "lease-revoke", OpLeaseExpire: "lease-expire",
	OpLockAcquire: "lock-acquire", OpLockRelease: "lock-release", OpLockBreak: "lock-break", OpLockProclaim: "lock-proclaim",
	OpPutFlags: "put-flags", OpCompareAndSwapFlags: "cas-flags", OpKeyAcquire: "key-acquire", OpKeyRelease: "key-release",
	OpDeleteAttached: "delete-attached",
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
	Value []byte // OpPut, OpCreate, OpCompareAndSwap, OpPutFlags, OpCompareAndSwapFlags
	// Version is the expected version of OpCompareAndSwap and
	// OpCompareAndSwapFlags (0: absent) and
	// of OpDelete (0: any), and the least version OpRestore writes.
	Version uint64
	Delta   int64 // OpIncrement
	// RequestID, when not empty, makes a write exactly-once (request.go):
	// a UUID of version 7. OpOutcome asks about it.
	RequestID string
	// Lease is the ID of a lease the write attaches the key to (0: none;
	// protocol.Attrs.Lease): OpPut, OpCreate and OpCompareAndSwap take
	// it (a put without one detaches the key, as in etcd), and
	// OpDeleteAttached needs it. Flags are a client's opaque flags for
	// the key (protocol.Attrs.Flags), which no operation takes yet.
	Lease uint64
	Flags uint64
}

// Validate checks the operation against the limits before anything is sent.
func (o Op) Validate(l Limits) error {
	if o.Kind < OpGet || o.Kind > OpDeleteAttached {
		return fmt.Errorf("caspaxos: unknown operation %d", o.Kind)
	}
	if o.Kind >= OpLockAcquire && o.Kind <= OpLockProclaim {
		if o.Lease != 0 || o.Flags != 0 {
			return fmt.Errorf("%w: operation %v takes no lease and no flags", ErrBadLock, o.Kind)
		}
		if err := o.validateLock(); err != nil {
			return err
		}
		if err := l.CheckKey(o.Key); err != nil {
			return err
		}
		return l.CheckValue(o.Value)
	}
	if o.Kind >= OpLeaseGrant && o.Kind <= OpLeaseExpire && (o.RequestID != "" || !IsLeaseKey(o.Key)) {
		return fmt.Errorf("%w: a lease operation takes a lease's key and no request ID", ErrBadLease)
	}
	// Which operations take a lease (Attrs.Lease) and flags (Attrs.Flags).
	switch o.Kind {
	case OpPut, OpCreate, OpCompareAndSwap:
		if o.Flags != 0 {
			return fmt.Errorf("%w: operation %v takes no flags", ErrBadLease, o.Kind)
		}
	case OpPutFlags, OpCompareAndSwapFlags:
		if o.Lease != 0 {
			return fmt.Errorf("%w: operation %v takes no lease", ErrBadLease, o.Kind)
		}
	case OpKeyAcquire, OpKeyRelease:
		if o.Lease == 0 {
			return fmt.Errorf("%w: a lock operation names its lease", ErrBadLease)
		}
	case OpLeaseGrant:
		if o.Lease != 0 || o.Flags&^LeaseKeysKept != 0 {
			return fmt.Errorf("%w: a grant takes no lease and no flags but LeaseKeysKept", ErrBadLease)
		}
	case OpDeleteAttached:
		if o.Lease == 0 || o.Flags != 0 || o.RequestID != "" {
			return fmt.Errorf("%w: a delete of attached keys takes a lease, no flags and no request ID", ErrBadLease)
		}
	default:
		if o.Lease != 0 || o.Flags != 0 {
			return fmt.Errorf("%w: operation %v takes no lease and no flags", ErrBadLease, o.Kind)
		}
	}
	if o.Kind == OpLeaseGrant {
		if err := CheckLeaseTTL(time.Duration(o.Delta) * time.Millisecond); err != nil {
			return err
		}
	}
	switch {
	case o.RequestID == "" && o.Kind == OpOutcome:
		return fmt.Errorf("%w: an outcome query needs a request ID", ErrBadRequestID)
	case o.RequestID != "" && o.Kind == OpGet:
		return fmt.Errorf("%w: a read takes no request ID", ErrBadRequestID)
	case o.RequestID != "":
		if _, err := ParseRequestID(o.RequestID); err != nil {
			return err
		}
	}
	if err := l.CheckKey(o.Key); err != nil {
		return err
	}
	return l.CheckValue(o.Value)
}

// ChangeAt returns the operation's change function as a proposer runs it
// at nowMillis, the time it fixed before the change runs: Change, made
// exactly-once when the operation carries a request ID (Idempotent), or
// an outcome query (OutcomeQuery). Nil for OpGet.
func (o Op) ChangeAt(nowMillis int64, c Idempotency) (protocol.Change, error) {
	switch o.Kind {
	case OpLeaseGrant:
		return LeaseGrant(o.Delta, nowMillis, o.Flags), nil
	case OpLeaseKeepAlive:
		return LeaseKeepAlive(nowMillis), nil
	case OpLeaseRevoke:
		return LeaseRevoke(), nil
	case OpLeaseExpire:
		return LeaseExpire(nowMillis, c.MaxClockSkew.Milliseconds()), nil
	case OpLockAcquire, OpLockRelease, OpLockBreak, OpLockProclaim:
		return o.lockChangeAt(nowMillis)
	case OpDeleteAttached:
		return DeleteAttached(o.Lease), nil
	}
	if o.RequestID == "" || o.Kind == OpGet {
		return o.Change(), nil
	}
	req, err := ParseRequestID(o.RequestID)
	if err != nil {
		return nil, err
	}
	if o.Kind == OpOutcome {
		return OutcomeQuery(req, nowMillis, c.RequestWindow()), nil
	}
	return Idempotent(o, req, nowMillis, c.RequestWindow()), nil
}

// Change returns the operation's change function, without its request ID
// (see ChangeAt); nil for OpGet, which is a read, not a change, and for
// OpOutcome, which needs the time.
func (o Op) Change() protocol.Change {
	switch o.Kind {
	case OpPut:
		return PutAttached(o.Value, o.Lease)
	case OpCreate:
		return CompareAndSwapAttached(0, o.Value, o.Lease)
	case OpCompareAndSwap:
		return CompareAndSwapAttached(o.Version, o.Value, o.Lease)
	case OpDelete:
		return Delete(o.Version)
	case OpIncrement:
		return Increment(o.Delta)
	case OpRestore:
		return Restore(o.Value, o.Version)
	case OpPutFlags:
		return PutFlags(o.Value, o.Flags)
	case OpCompareAndSwapFlags:
		return CompareAndSwapFlags(o.Version, o.Value, o.Flags)
	case OpKeyAcquire:
		return KeyAcquire(o.Lease, o.Value, o.Flags)
	case OpKeyRelease:
		return KeyRelease(o.Lease, o.Version, o.Value, o.Flags)
	default:
		return nil
	}
}
