// Package kv defines the store's operations as protocol.Change functions,
// their typed errors, and the limits on keys and values. The embeddable
// store, the server and the simulator all use these, so an operation means
// the same thing wherever it runs.
package kv

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/caspaxos/caspaxos/protocol"
)

var (
	// ErrNotFound: the key is absent or deleted.
	ErrNotFound = errors.New("caspaxos: key not found")
	// ErrVersionMismatch: a condition on the version failed. The error is a
	// *VersionMismatchError carrying the current version.
	ErrVersionMismatch = errors.New("caspaxos: version mismatch")
	// ErrNotAnInteger: Increment found a value that is not a decimal int64.
	ErrNotAnInteger = errors.New("caspaxos: value is not an integer")
	// ErrOverflow: Increment would leave the int64 range.
	ErrOverflow = errors.New("caspaxos: integer overflow")
	// ErrNoQuorum: no quorum of acceptors answered in time; nothing was
	// applied and nothing will be.
	ErrNoQuorum = errors.New("caspaxos: no quorum: nothing was applied")
	// ErrOverloaded: the node refused the request because it runs as many
	// requests as it may at once; nothing was applied. Retry later, or
	// at another node.
	ErrOverloaded = errors.New("caspaxos: overloaded: the node refused the request; nothing was applied")
	// ErrUnknownOutcome: the change was sent to the acceptors and the
	// deadline passed without an answer; it may or may not take effect.
	// Retrying a non-idempotent change after it may apply it twice.
	ErrUnknownOutcome = errors.New("caspaxos: outcome unknown: the change may or may not take effect")
	// ErrNoSpace: the node's disk is nearly full (or its store is over its
	// quota), so it refuses new writes; nothing was applied. Reads and
	// deletes still run: deletes free space once deletion GC collects
	// their tombstones.
	ErrNoSpace = errors.New("caspaxos: no space: the node's disk is nearly full or its store is over quota; nothing was applied")
	// ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge: the request breaks a limit.
	ErrEmptyKey      = errors.New("caspaxos: key is empty")
	ErrKeyTooLarge   = errors.New("caspaxos: key too large")
	ErrValueTooLarge = errors.New("caspaxos: value too large")
	// ErrReservedKey: the key begins with ReservedPrefix, which is the
	// cluster's own (its auth state); the client API refuses it.
	ErrReservedKey = errors.New("caspaxos: keys beginning with the byte 0x00 are reserved for the cluster itself")
	// ErrUnauthenticated: auth is enabled and the request carried no valid
	// credentials (no token, a wrong or expired one, a wrong password);
	// nothing was applied.
	ErrUnauthenticated = errors.New("caspaxos: unauthenticated")
	// ErrPermissionDenied: the authenticated user lacks the permission the
	// request needs; nothing was applied.
	ErrPermissionDenied = errors.New("caspaxos: permission denied")
)

// ReservedPrefix begins every key the cluster keeps for itself.
const ReservedPrefix = "\x00"

// CheckClientKey returns ErrReservedKey for a key a client may not touch.
func CheckClientKey(key string) error {
	if len(key) > 0 && key[0] == ReservedPrefix[0] {
		return ErrReservedKey
	}
	return nil
}

// PrefixShows reports whether a listing or a watch of prefix shows key:
// key is under prefix, and a reserved key only under a prefix that is
// reserved itself. A client's prefix never is (CheckClientKey), so no
// client's listing or prefix watch, not even of every key (prefix ""),
// shows the cluster's own keys (auth state, leases, locks, sessions);
// only the node's services name such a prefix (the etcd API's
// LeaseLeases lists LeasePrefix).
func PrefixShows(prefix, key string) bool {
	return strings.HasPrefix(key, prefix) && (CheckClientKey(key) == nil || CheckClientKey(prefix) != nil)
}

// VersionMismatchError is a refused compare-and-swap or create. Current is
// the version the key has (0 when absent or deleted).
type VersionMismatchError struct {
	Expected uint64
	Current  uint64
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("caspaxos: version mismatch: expected %d, current %d", e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }

// CurrentVersion is the version a condition compares with: 0 unless the key exists.
func CurrentVersion(s protocol.State) uint64 {
	if s.Exists() {
		return s.Version
	}
	return 0
}

// Put stores value whatever the key holds, attached to no lease
// (PutAttached).
func Put(value []byte) protocol.Change { return PutAttached(value, 0) }

// PutAttached stores value whatever the key holds, attached to lease (0:
// to none): a put decides the key's lease, as in etcd, where a put
// without a lease detaches the key. The key's flags and lock index are
// kept (attach).
func PutAttached(value []byte, lease uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		return attach(protocol.Write{Kind: protocol.WriteSet, Value: value}, cur, lease), nil
	}
}

// attach gives w, a WriteSet, the attributes of a write that attaches the
// key to lease (0: none) and keeps its other attributes.
func attach(w protocol.Write, cur protocol.State, lease uint64) protocol.Write {
	w.Attrs = &protocol.Attrs{Lease: lease, Flags: cur.Flags, LockIndex: cur.LockIndex}
	return w
}

// CompareAndSwap stores value only if the key's current version is version;
// version 0 means "only if absent". It attaches the key to no lease
// (CompareAndSwapAttached).
func CompareAndSwap(version uint64, value []byte) protocol.Change {
	return CompareAndSwapAttached(version, value, 0)
}

// CompareAndSwapAttached is CompareAndSwap attaching the key to lease (0:
// none), as PutAttached.
func CompareAndSwapAttached(version uint64, value []byte, lease uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if c := CurrentVersion(cur); c != version {
			return protocol.Write{}, &VersionMismatchError{Expected: version, Current: c}
		}
		return attach(protocol.Write{Kind: protocol.WriteSet, Value: value}, cur, lease), nil
	}
}

// Create stores value only if the key is absent or deleted.
func Create(value []byte) protocol.Change { return CompareAndSwap(0, value) }

// Delete removes the key, leaving a tombstone. If version is not 0 it only
// does so while the key has that version. Deleting an absent key is ErrNotFound.
func Delete(version uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if !cur.Exists() {
			if version != 0 {
				return protocol.Write{}, &VersionMismatchError{Expected: version}
			}
			return protocol.Write{}, ErrNotFound
		}
		if version != 0 && cur.Version != version {
			return protocol.Write{}, &VersionMismatchError{Expected: version, Current: cur.Version}
		}
		return protocol.Write{Kind: protocol.WriteDelete}, nil
	}
}

// Increment adds delta to the decimal int64 the key holds (absent counts as 0).
func Increment(delta int64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		n, err := Integer(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return protocol.Write{}, fmt.Errorf("%w: %d + %d", ErrOverflow, n, delta)
		}
		return protocol.Write{Kind: protocol.WriteSet, Value: strconv.AppendInt(nil, n+delta, 10)}, nil
	}
}

// Restore stores value whatever the key holds, at a version of at least
// minVersion (and above the key's current one, as every write): a key
// restored from a snapshot whose versions all lay below minVersion can
// never match a compare-and-swap a client prepared against the snapshot's
// cluster (protocol.Write.MinVersion).
func Restore(value []byte, minVersion uint64) protocol.Change {
	return func(protocol.State) (protocol.Write, error) {
		return protocol.Write{Kind: protocol.WriteSet, Value: value, MinVersion: minVersion}, nil
	}
}

// Integer reads a state as Increment does: absent is 0.
func Integer(s protocol.State) (int64, error) {
	if !s.Exists() {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(s.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %.32q", ErrNotAnInteger, s.Value)
	}
	return n, nil
}

// Limits bounds what a request may carry.
type Limits struct {
	MaxKeyBytes   int
	MaxValueBytes int
}

// DefaultLimits: keys up to 4 KiB, values up to 1 MiB.
var DefaultLimits = Limits{MaxKeyBytes: 4 << 10, MaxValueBytes: 1 << 20}

// CheckKey returns ErrEmptyKey or ErrKeyTooLarge (wrapped, with the sizes) or nil.
func (l Limits) CheckKey(key string) error {
	switch {
	case key == "":
		return ErrEmptyKey
	case len(key) > l.MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), l.MaxKeyBytes)
	}
	return nil
}

// CheckValue returns ErrValueTooLarge (wrapped, with the sizes) or nil.
func (l Limits) CheckValue(value []byte) error {
	if len(value) > l.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), l.MaxValueBytes)
	}
	return nil
}
