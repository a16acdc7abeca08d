package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/caspaxos/caspaxos/protocol"
)

// The attached index: lease ID -> key, for every register whose stored
// state is attached to a lease (protocol.State.Lease != 0), so that a
// lease's reaper finds the keys to delete when the lease ends without
// walking every register (server/lease).
//
// It mirrors the stored registers, accepted states included, whether
// chosen or not: it is a filter for the reaper, which deletes a key only
// through a committed change that checks the key's lease itself
// (kv.DeleteAttached). Pebble keeps it in the same batch as the register
// writes that change it (Apply, ApplyUnsynced, Remove, RemoveMany), so
// that after a crash the index and the registers agree.

// Attached is one entry of the attached index: Key's register is attached
// to Lease.
type Attached struct {
	Lease uint64
	Key   string
}

// AttachedStore is the attached index of a Store.
type AttachedStore interface {
	// ScanAttached calls fn with the entries of the attached index that
	// come after (afterLease, afterKey), ordered by lease, then by key in
	// byte order, until fn returns false: (0, "") starts from the first,
	// and (L+1, "") skips the rest of lease L. Like Scan, it reads a
	// consistent snapshot and holds no lock that blocks Apply. The index holds (L, K) exactly when K's stored
	// register has State.Lease == L, as long as the Applys of one key do
	// not overlap in time (the acceptor's, which orders them); overlapping
	// Applys of one key may leave an entry that names a lease the register
	// no longer has, which the next Apply of the key that changes its
	// lease does not remove. An Apply still syncing may or may not be
	// seen.
	ScanAttached(afterLease uint64, afterKey string, fn func(lease uint64, key string) bool) error
}

// prefixAttached begins the Pebble key of every entry of the attached index.
const prefixAttached byte = 'l'

// attachedKey returns the Pebble key of an index entry: 'l', the lease ID
// 8 bytes big-endian, the register key, so that Pebble's byte order is the
// order of (Lease, Key).
func attachedKey(a Attached) []byte {
	k := make([]byte, 0, 1+uint64Bytes+len(a.Key))
	k = append(k, prefixAttached)
	k = binary.BigEndian.AppendUint64(k, a.Lease)
	return append(k, a.Key...)
}

// attachedEntry decodes an index entry's Pebble key; the lease must not be 0.
func attachedEntry(pebbleKey []byte) (Attached, error) {
	if len(pebbleKey) < 1+uint64Bytes || pebbleKey[0] != prefixAttached {
		return Attached{}, fmt.Errorf("%w: %s: malformed attached-index key", ErrCorrupt, keyName(pebbleKey))
	}
	lease := binary.BigEndian.Uint64(pebbleKey[1:])
	if lease == 0 {
		return Attached{}, fmt.Errorf("%w: %s: attached-index key of lease 0", ErrCorrupt, keyName(pebbleKey))
	}
	return Attached{Lease: lease, Key: string(pebbleKey[1+uint64Bytes:])}, nil
}

// recordLease returns the lease of a stored register record, checked as
// decodeRegister checks it but without copying its value.
func recordLease(pebbleKey, rec []byte) (uint64, error) {
	b, _, err := unsealAny(pebbleKey, rec, recordVersionRequests)
	if err != nil {
		return 0, err
	}
	var st protocol.State
	if _, err := splitTrailers(pebbleKey, b, &st); err != nil {
		return 0, err
	}
	return st.Lease, nil
}

// storedLease is the lease of key's stored register (0: none, or a record
// that does not decode, whose entry, if any, stays: see AttachedStore).
func (s *Pebble) storedLease(pebbleKey []byte) uint64 {
	val, closer, err := s.db.Get(pebbleKey)
	if err != nil {
		return 0
	}
	defer closer.Close()
	lease, err := recordLease(pebbleKey, val)
	if err != nil {
		return 0
	}
	return lease
}

// indexAttached adds to b the index changes of writing the registers of
// entries: for each key (its last entry, which wins), the entry of the
// lease it had is moved to the lease it gets. It reads each key's stored
// register, before b commits, unless no register of the store was ever
// attached (attachedSeen) and none of entries is: a store whose keys
// never have leases pays nothing for the index. That is sound as long as
// the Applys of one key do not overlap (AttachedStore): an Apply that
// attaches a key sets attachedSeen before it commits, so an Apply that
// starts after it reads the stored leases, and one that started before it
// writes other keys.
func (s *Pebble) indexAttached(b *pebble.Batch, entries []Entry) error {
	if !s.attachedSeen.Load() {
		if !slices.ContainsFunc(entries, func(e Entry) bool { return e.Register.State.Lease != 0 }) {
			return nil
		}
		s.attachedSeen.Store(true)
	}
	var last map[string]int
	if len(entries) > 1 {
		last = make(map[string]int, len(entries))
		for i, e := range entries {
			last[e.Key] = i
		}
	}
	for i, e := range entries {
		if last != nil && last[e.Key] != i {
			continue
		}
		old, now := s.storedLease(registerKey(e.Key)), e.Register.State.Lease
		if err := unindexAttached(b, e.Key, old, now); err != nil {
			return err
		}
		if now != 0 && now != old {
			k := attachedKey(Attached{Lease: now, Key: e.Key})
			if err := b.Set(k, encodeEmpty(k), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// unindexAttached adds to b the removal of key's entry under lease old,
// unless it stays (old == keep) or there is none (old == 0).
func unindexAttached(b *pebble.Batch, key string, old, keep uint64) error {
	if old == 0 || old == keep {
		return nil
	}
	return b.Delete(attachedKey(Attached{Lease: old, Key: key}), nil)
}

// loadAttachedSeen sets attachedSeen if the index has an entry, when the
// store opens.
func (s *Pebble) loadAttachedSeen() error {
	return s.iterate([]byte{prefixAttached}, []byte{prefixAttached + 1}, func(k, raw []byte) (bool, error) {
		s.attachedSeen.Store(true)
		return false, nil
	})
}

// ScanAttached implements AttachedStore.
func (s *Pebble) ScanAttached(afterLease uint64, afterKey string, fn func(lease uint64, key string) bool) error {
	lower := append(attachedKey(Attached{Lease: afterLease, Key: afterKey}), 0x00)
	return s.iterate(lower, []byte{prefixAttached + 1}, func(k, raw []byte) (bool, error) {
		a, err := attachedEntry(k)
		if err == nil {
			err = decodeEmpty(k, raw)
		}
		if err != nil {
			return false, err
		}
		return fn(a.Lease, a.Key), nil
	})
}

// ScanAttached implements AttachedStore: Memory derives the index from its
// registers at each call (it is for tests and the simulator).
func (m *Memory) ScanAttached(afterLease uint64, afterKey string, fn func(lease uint64, key string) bool) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.exit()
	m.mu.RLock()
	var all []Attached
	for k, reg := range m.regs {
		a := Attached{Lease: reg.State.Lease, Key: k}
		if a.Lease != 0 && compareAttached(a, Attached{Lease: afterLease, Key: afterKey}) > 0 {
			all = append(all, a)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(all, compareAttached)
	for _, a := range all {
		if m.gate.isClosed() {
			return ErrClosed
		}
		if !fn(a.Lease, a.Key) {
			return nil
		}
	}
	return nil
}

// compareAttached orders entries by Lease, then Key.
func compareAttached(a, b Attached) int {
	switch {
	case a.Lease < b.Lease:
		return -1
	case a.Lease > b.Lease:
		return 1
	}
	return strings.Compare(a.Key, b.Key)
}
