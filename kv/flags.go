package kv

import "github.com/caspaxos/caspaxos/protocol"

// Writes that carry a client's flags (protocol.Attrs.Flags): Consul's KV
// set and check-and-set (server/consulapi). Consul's set replaces the
// key's flags (a set without flags stores 0) and keeps the rest of what
// the key holds beside its value: its lock holder (Lease) and LockIndex,
// so that a plain write of a held lock's key leaves it held.

// PutFlags stores value and flags whatever the key holds, keeping its
// Lease and LockIndex (none, on a key that begins a new life).
func PutFlags(value []byte, flags uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		return protocol.Write{Kind: protocol.WriteSet, Value: value, Attrs: flagged(cur, flags)}, nil
	}
}

// CompareAndSwapFlags is PutFlags only if the key's current version is
// version; version 0 means "only if absent" (Consul's ?cas=0).
func CompareAndSwapFlags(version uint64, value []byte, flags uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if c := CurrentVersion(cur); c != version {
			return protocol.Write{}, &VersionMismatchError{Expected: version, Current: c}
		}
		return protocol.Write{Kind: protocol.WriteSet, Value: value, Attrs: flagged(cur, flags)}, nil
	}
}

// flagged is cur's attributes with flags (a key that does not exist has none).
func flagged(cur protocol.State, flags uint64) *protocol.Attrs {
	var a protocol.Attrs
	if cur.Exists() {
		a = cur.Attrs
	}
	a.Flags = flags
	return &a
}
