package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Space is the room a store takes and the room left on its disk, for the
// server's full-disk check (it refuses new writes before the disk fills).
type Space struct {
	// StoreBytes is the store's size: for Pebble, its tables and write-ahead
	// logs on disk, obsolete ones not yet deleted included (what a quota
	// like etcd's --quota-backend-bytes bounds); for Memory, the bytes of
	// its keys and values.
	StoreBytes uint64
	// AvailBytes and TotalBytes describe the filesystem of the data
	// directory, as statfs reports it (AvailBytes: what this process may
	// still write). FSKnown is false when the store has no filesystem
	// (Memory) or it cannot tell; both are then 0.
	AvailBytes, TotalBytes uint64
	FSKnown                bool
}

// SpaceReporter is a Store that reports its Space. Both stores of this
// package implement it.
type SpaceReporter interface {
	// Space returns the store's size and its disk's free room. It takes
	// little time (a statfs and a read of counters) but more than a Get:
	// callers cache it.
	Space() (Space, error)
}

var (
	_ SpaceReporter = (*Pebble)(nil)
	_ SpaceReporter = (*Memory)(nil)
)

// Space implements SpaceReporter.
func (s *Pebble) Space() (Space, error) {
	if err := s.gate.enter(); err != nil {
		return Space{}, err
	}
	defer s.gate.exit()
	sp := Space{StoreBytes: s.db.Metrics().DiskSpaceUsage()}
	u, err := s.dir.fs.GetDiskUsage(s.dir.path)
	switch {
	case errors.Is(err, vfs.ErrUnsupported):
	case err != nil:
		return sp, fmt.Errorf("caspaxos/storage: free space of %s: %w", s.dir.path, err)
	default:
		sp.AvailBytes, sp.TotalBytes, sp.FSKnown = u.AvailBytes, u.TotalBytes, true
	}
	return sp, nil
}

// Space implements SpaceReporter: the bytes of the keys and values held.
func (m *Memory) Space() (Space, error) {
	if err := m.gate.enter(); err != nil {
		return Space{}, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var n uint64
	for k, r := range m.regs {
		n += uint64(len(k) + len(r.State.Value))
	}
	return Space{StoreBytes: n}, nil
}
