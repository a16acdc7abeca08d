package storage

import (
	"github.com/cockroachdb/pebble/v2"
)

// AcceptorStore is the acceptor's part of PROTOCOL.md §12 (promises without
// a sync): its ceiling, and register writes that need no sync before the
// acceptor answers (promises).
type AcceptorStore interface {
	// AcceptorCeiling returns the acceptor's persisted ceiling (0 if none):
	// no ballot with a counter at or above it was ever promised or accepted
	// by this acceptor. The acceptor takes it as its floor when it starts.
	AcceptorCeiling() (uint64, error)
	// SetAcceptorCeiling raises the stored acceptor ceiling to c, durably,
	// before it returns. It never goes down: a c at or below the stored
	// one changes nothing (and still returns once the stored one is
	// durable). Concurrent calls leave the highest.
	SetAcceptorCeiling(c uint64) error
	// ApplyUnsynced writes entries as Apply does, atomically, but returns
	// without waiting for an fsync: they become durable with the next
	// synced write of the store (an Apply, any Set...), and a crash keeps
	// the writes of the store in the order they were made, a prefix of
	// them. Get and Scan may return them before they are durable. Only for
	// registers whose sole change is a promise kept by the acceptor's floor
	// (§12); never for an accepted state.
	ApplyUnsynced(entries []Entry) error
}

// acceptorCeilingKey is the Pebble key of the acceptor ceiling record.
const acceptorCeilingKey = string(prefixMeta) + "acceptor-ceiling"

// AcceptorCeiling implements AcceptorStore.
func (s *Pebble) AcceptorCeiling() (uint64, error) {
	if err := s.gate.enter(); err != nil {
		return 0, err
	}
	defer s.gate.exit()
	raw, found, err := s.read([]byte(acceptorCeilingKey))
	if err != nil || !found {
		return 0, err
	}
	return decodeUint64([]byte(acceptorCeilingKey), raw)
}

// SetAcceptorCeiling implements AcceptorStore.
func (s *Pebble) SetAcceptorCeiling(c uint64) error {
	return s.raiseUint64(acceptorCeilingKey, c)
}

// ApplyUnsynced implements AcceptorStore: one Pebble batch, committed
// without Sync. Pebble's write-ahead log keeps batches in commit order and
// a later synced commit syncs the log up to itself, so a crash keeps a
// prefix of the writes.
func (s *Pebble) ApplyUnsynced(entries []Entry) error {
	return s.apply(entries, pebble.NoSync)
}

// AcceptorCeiling implements AcceptorStore.
func (m *Memory) AcceptorCeiling() (uint64, error) {
	if err := m.gate.enter(); err != nil {
		return 0, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.accCeiling, nil
}

// SetAcceptorCeiling implements AcceptorStore.
func (m *Memory) SetAcceptorCeiling(c uint64) error {
	return m.write(func() { m.accCeiling = max(m.accCeiling, c) })
}

// ApplyUnsynced implements AcceptorStore: Memory has nothing to sync.
func (m *Memory) ApplyUnsynced(entries []Entry) error { return m.Apply(entries) }
