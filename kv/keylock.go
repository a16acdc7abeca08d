package kv

import (
	"errors"

	"github.com/caspaxos/caspaxos/protocol"
)

// Locks on a key (COORDINATION.md, Locks and elections; Consul's ?acquire
// and ?release, server/consulapi). The key's holder is the lease in its
// attributes (protocol.Attrs.Lease); LockIndex counts its acquisitions by
// a new holder, so that it rises with each one (Consul's sequencer). A
// lease that ends does not release its keys by itself: whoever finds a
// key held by an ended lease releases it with KeyRelease on the version
// it read.

var (
	// ErrKeyHeld: an acquire of a key that another lease holds.
	ErrKeyHeld = errors.New("caspaxos: the key is held by another lease")
	// ErrKeyNotHeld: a release by a lease that does not hold the key.
	ErrKeyNotHeld = errors.New("caspaxos: the key is not held by this lease")
)

// KeyAcquire makes lease the key's holder and stores value and flags, if
// the key is free (absent, or live with no holder) or lease holds it
// already; a new holder increments LockIndex. Otherwise ErrKeyHeld.
func KeyAcquire(lease uint64, value []byte, flags uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		var a protocol.Attrs
		if cur.Exists() {
			a = cur.Attrs
		}
		switch a.Lease {
		case lease:
		case 0:
			a.Lease = lease
			a.LockIndex++
		default:
			return protocol.Write{}, ErrKeyHeld
		}
		a.Flags = flags
		return protocol.Write{Kind: protocol.WriteSet, Value: value, Attrs: &a}, nil
	}
}

// KeyRelease frees a key lease holds, storing value and flags (LockIndex
// stays). version, if not 0, is the version the key must have: a release
// of an ended holder's key found at that version, which passes the value
// and flags read, so that a change since is never undone.
func KeyRelease(lease, version uint64, value []byte, flags uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if version != 0 && CurrentVersion(cur) != version {
			return protocol.Write{}, &VersionMismatchError{Expected: version, Current: CurrentVersion(cur)}
		}
		if !cur.Exists() || cur.Lease != lease {
			return protocol.Write{}, ErrKeyNotHeld
		}
		a := cur.Attrs
		a.Lease, a.Flags = 0, flags
		return protocol.Write{Kind: protocol.WriteSet, Value: value, Attrs: &a}, nil
	}
}
