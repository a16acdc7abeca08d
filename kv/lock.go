package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caspaxos/caspaxos/protocol"
)

// Locks and elections (COORDINATION.md, "Locks and elections";
// docs/locks.md).
//
// A lock is one register, under LockKey(name): the lease that holds it
// (0: free), an owner tag, the time before which it may not be acquired
// (not_before, set by an involuntary release), the lock delay that such a
// release applies, and, for an election, the leader's value. Acquire,
// release, break and proclaim are change functions of that register;
// those that need the time take the proposer's, fixed before the change
// runs, never a clock read.
//
// The fencing token of a hold is the register's version after the
// acquire: versions strictly increase forever (PROTOCOL §7), so every
// later hold, by anyone, has a higher token.
//
// Whether the holder's lease is dead is not something a change of the
// lock's register can see (a change reads one register). The breaker
// (a waiter, server/lock) reads the lock register (version v, holder L),
// then reads L's lease register linearizably; when that lease is expired,
// revoked or absent, it proposes LockBreak(L, v): a compare-and-swap on
// v, so the decision is a committed change of exactly the state it
// judged. Leases never come back to life: an ID that was ever a lease is
// never granted again (LeaseGrant).

// Lock bounds.
const (
	// DefaultLockDelay is the delay an involuntary release (a break)
	// imposes before the next acquire, as Consul's default lock-delay: a
	// holder that missed its lease's end has that long to notice.
	DefaultLockDelay = 15 * time.Second
	// MaxLockDelay bounds a lock's delay (Consul's bound too).
	MaxLockDelay = 60 * time.Second
	// DefaultLockWait is how long an acquire waits for the lock when the
	// request names no wait (server/lock), and the Go client's wait per
	// acquire call.
	DefaultLockWait = 30 * time.Second
	// MaxLockWait caps an acquire's wait (as MaxWatchWait caps a long
	// poll's); a longer wait is cut to it.
	MaxLockWait = MaxWatchWait
	// MaxLockOwnerBytes bounds an owner tag.
	MaxLockOwnerBytes = 256
	// lockFormat is the first byte of a lock's value.
	lockFormat byte = 1
	// lockPrefix begins every lock's key, in the cluster's reserved space.
	lockPrefix = ReservedPrefix + "lock/"
)

// LockPrefix begins every lock's key.
const LockPrefix = lockPrefix

var (
	// ErrLocked: the lock is held by another lease, or within its lock
	// delay after an involuntary release.
	ErrLocked = errors.New("caspaxos: locked")
	// ErrNotLockHolder: a release or proclaim by a lease that does not
	// hold the lock (it was released, or broken after its lease ended).
	ErrNotLockHolder = errors.New("caspaxos: the lease does not hold the lock")
	// ErrBadLock: a lock's stored value or a request's parameters are
	// invalid.
	ErrBadLock = errors.New("caspaxos: bad lock")
)

// Lock is a lock register's value.
type Lock struct {
	// Holder is the holding lease's ID; 0: free.
	Holder uint64
	// Owner is a tag the holder chose (a host name, a process): shown,
	// never compared.
	Owner string
	// NotBeforeMillis: no acquire before this time (proposer's clock, ms
	// since the epoch); set by a break.
	NotBeforeMillis int64
	// DelayMillis is the lock delay a break applies.
	DelayMillis int64
	// Since is the register's version before the acquire that began the
	// hold (set by LockAcquire): the hold's token is above it, and every
	// earlier hold's token is at most it. A release names the token of
	// the hold it ends, so that a release of an earlier hold of the same
	// lease (delayed, or retried by its proposer after its caller gave up)
	// never frees a later hold (LockRelease).
	Since uint64
	// Value is an election's leader value (empty for a lock).
	Value []byte
}

// LockKey is the register key of the lock (or election) name.
func LockKey(name string) string { return lockPrefix + name }

// LockName returns the name of a lock's key, false if key is no lock's.
func LockName(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, lockPrefix)
	return name, ok && name != ""
}

// CheckLockName refuses an empty name, one that is not UTF-8, or one that
// begins with the reserved byte.
func CheckLockName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrBadLock)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name is not UTF-8", ErrBadLock)
	}
	return CheckClientKey(name)
}

// CheckLockDelay refuses a lock delay out of 0..MaxLockDelay or not in
// whole milliseconds.
func CheckLockDelay(d time.Duration) error {
	if d < 0 || d > MaxLockDelay || d%time.Millisecond != 0 {
		return fmt.Errorf("%w: lock delay %v is not a whole number of milliseconds within 0..%v", ErrBadLock, d, MaxLockDelay)
	}
	return nil
}

// EncodeLock returns l's value: the format byte (1), the holder (uvarint),
// the owner's length (uvarint) and bytes, not_before (varint, ms), the
// delay (uvarint, ms), since (uvarint), then the value to the end.
func EncodeLock(l Lock) []byte {
	b := []byte{lockFormat}
	b = binary.AppendUvarint(b, l.Holder)
	b = binary.AppendUvarint(b, uint64(len(l.Owner)))
	b = append(b, l.Owner...)
	b = binary.AppendVarint(b, l.NotBeforeMillis)
	b = binary.AppendUvarint(b, uint64(l.DelayMillis))
	b = binary.AppendUvarint(b, l.Since)
	return append(b, l.Value...)
}

// DecodeLock decodes a lock's value; it refuses an unknown format, a
// truncated field, an owner past MaxLockOwnerBytes and a delay past
// MaxLockDelay (ErrBadLock).
func DecodeLock(b []byte) (Lock, error) {
	if len(b) == 0 || b[0] != lockFormat {
		return Lock{}, fmt.Errorf("%w: unknown format", ErrBadLock)
	}
	b = b[1:]
	var l Lock
	var n int
	if l.Holder, n = binary.Uvarint(b); n <= 0 {
		return Lock{}, fmt.Errorf("%w: truncated holder", ErrBadLock)
	}
	b = b[n:]
	owner, n := binary.Uvarint(b)
	if n <= 0 || owner > MaxLockOwnerBytes || owner > uint64(len(b)-n) {
		return Lock{}, fmt.Errorf("%w: bad owner length", ErrBadLock)
	}
	l.Owner = string(b[n : n+int(owner)])
	b = b[n+int(owner):]
	if l.NotBeforeMillis, n = binary.Varint(b); n <= 0 {
		return Lock{}, fmt.Errorf("%w: truncated not_before", ErrBadLock)
	}
	b = b[n:]
	delay, n := binary.Uvarint(b)
	if n <= 0 || delay > uint64(MaxLockDelay.Milliseconds()) {
		return Lock{}, fmt.Errorf("%w: bad lock delay", ErrBadLock)
	}
	l.DelayMillis = int64(delay)
	b = b[n:]
	if l.Since, n = binary.Uvarint(b); n <= 0 {
		return Lock{}, fmt.Errorf("%w: truncated since", ErrBadLock)
	}
	if len(b[n:]) > 0 {
		l.Value = bytes.Clone(b[n:])
	}
	return l, nil
}

// LockOf reads a lock register's state: a free lock when there is none.
func LockOf(s protocol.State) (Lock, error) {
	if !s.Exists() {
		return Lock{}, nil
	}
	return DecodeLock(s.Value)
}

// lockWrite is a change's write of l.
func lockWrite(l Lock) protocol.Write {
	return protocol.Write{Kind: protocol.WriteSet, Value: EncodeLock(l)}
}

// LockAcquire gives the lock to want.Holder (with want's owner, delay and
// value) if it is free and nowMillis >= not_before; otherwise ErrLocked.
// A lease that holds the lock already acquires it again (a retry after an
// unknown outcome, a new campaign value): the write moves the version, so
// the new token is above every earlier one and a break judged on the
// earlier state cannot apply.
func LockAcquire(want Lock, nowMillis int64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LockOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		switch {
		case l.Holder == want.Holder:
		case l.Holder != 0:
			return protocol.Write{}, fmt.Errorf("%w: held by lease %x", ErrLocked, l.Holder)
		case nowMillis < l.NotBeforeMillis:
			return protocol.Write{}, fmt.Errorf("%w: in its lock delay for %dms", ErrLocked, l.NotBeforeMillis-nowMillis)
		}
		want.NotBeforeMillis = 0
		want.Since = cur.Version // the token this write gives is above it
		return lockWrite(want), nil
	}
}

// LockRelease frees the lock if lease holds it in the hold of token (a
// voluntary release: no delay); otherwise ErrNotLockHolder. A token at
// most the hold's Since is an earlier hold's: the lease acquired the lock
// again since that release was sent, and keeps it. Token 0 releases
// whatever hold the lease has (a caller that does not know its token).
func LockRelease(lease, token uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LockOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if l.Holder == 0 || l.Holder != lease {
			return protocol.Write{}, ErrNotLockHolder
		}
		if token != 0 && token <= l.Since {
			return protocol.Write{}, fmt.Errorf("%w: token %d is an earlier hold's (this one began after version %d)", ErrNotLockHolder, token, l.Since)
		}
		return lockWrite(Lock{DelayMillis: l.DelayMillis}), nil
	}
}

// LockBreak frees the lock that lease holds at version, the state its
// proposer judged after reading lease dead, and forbids acquires until
// nowMillis + the lock's delay (an involuntary release). A state other
// than version is a VersionMismatchError; a holder other than lease
// ErrNotLockHolder.
func LockBreak(lease, version uint64, nowMillis int64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if c := CurrentVersion(cur); c != version {
			return protocol.Write{}, &VersionMismatchError{Expected: version, Current: c}
		}
		l, err := LockOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if l.Holder == 0 || l.Holder != lease {
			return protocol.Write{}, ErrNotLockHolder
		}
		return lockWrite(Lock{NotBeforeMillis: nowMillis + l.DelayMillis, DelayMillis: l.DelayMillis}), nil
	}
}

// LockProclaim sets an election's value, if lease leads it in the hold
// of token (0: whatever hold it has; the same guard as LockRelease's: a
// late proclaim of an earlier hold does not set a later one's value);
// otherwise ErrNotLockHolder.
func LockProclaim(lease, token uint64, value []byte) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LockOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if l.Holder == 0 || l.Holder != lease {
			return protocol.Write{}, ErrNotLockHolder
		}
		if token != 0 && token <= l.Since {
			return protocol.Write{}, fmt.Errorf("%w: token %d is an earlier hold's (this one began after version %d)", ErrNotLockHolder, token, l.Since)
		}
		l.Value = value
		return lockWrite(l), nil
	}
}

// LockOp builders: the operations as data (they cross the network to the
// key's home proposer). A lease ID travels in Delta, bit for bit.

// LockAcquireOp acquires name for want.Holder.
func LockAcquireOp(name string, want Lock) Op {
	return Op{Kind: OpLockAcquire, Key: LockKey(name), Value: EncodeLock(want)}
}

// LockReleaseOp releases name held by lease in the hold of token (0: any).
func LockReleaseOp(name string, lease, token uint64) Op {
	return Op{Kind: OpLockRelease, Key: LockKey(name), Delta: int64(lease), Version: token}
}

// LockBreakOp breaks name, held by lease at version.
func LockBreakOp(name string, lease, version uint64) Op {
	return Op{Kind: OpLockBreak, Key: LockKey(name), Delta: int64(lease), Version: version}
}

// LockProclaimOp sets election name's value, led by lease in the hold of
// token (0: any).
func LockProclaimOp(name string, lease, token uint64, value []byte) Op {
	return Op{Kind: OpLockProclaim, Key: LockKey(name), Delta: int64(lease), Version: token, Value: value}
}

// validateLock checks a lock operation's own fields.
func (o Op) validateLock() error {
	if o.RequestID != "" {
		return fmt.Errorf("%w: a lock operation takes no request ID", ErrBadLock)
	}
	name, ok := LockName(o.Key)
	if !ok {
		return fmt.Errorf("%w: not a lock's key", ErrBadLock)
	}
	if err := CheckLockName(name); err != nil {
		return err
	}
	if o.Kind == OpLockAcquire {
		want, err := DecodeLock(o.Value)
		if err != nil {
			return err
		}
		if want.Holder == 0 || want.NotBeforeMillis != 0 {
			return fmt.Errorf("%w: an acquire names a lease and no not_before", ErrBadLock)
		}
		return nil
	}
	if o.Delta == 0 {
		return fmt.Errorf("%w: lease ID 0", ErrBadLock)
	}
	return nil
}

// lockChangeAt is ChangeAt for the lock operations.
func (o Op) lockChangeAt(nowMillis int64) (protocol.Change, error) {
	switch o.Kind {
	case OpLockAcquire:
		want, err := DecodeLock(o.Value)
		if err != nil {
			return nil, err
		}
		return LockAcquire(want, nowMillis), nil
	case OpLockRelease:
		return LockRelease(uint64(o.Delta), o.Version), nil
	case OpLockBreak:
		return LockBreak(uint64(o.Delta), o.Version, nowMillis), nil
	case OpLockProclaim:
		return LockProclaim(uint64(o.Delta), o.Version, o.Value), nil
	}
	return nil, fmt.Errorf("caspaxos: %v is no lock operation", o.Kind)
}
