package storage

import (
	"maps"
	"slices"
	"strings"

	"github.com/caspaxos/caspaxos/protocol"
)

// memoryGC is Memory's deletion GC state (GCStore), guarded by Memory.mu.
type memoryGC struct {
	age    uint64
	fences map[protocol.NodeID]uint64
	queue  map[GCItem]struct{}
}

// Age implements GCStore.
func (m *Memory) Age() (uint64, error) {
	if err := m.gate.enter(); err != nil {
		return 0, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.gc.age, nil
}

// SetAge implements GCStore.
func (m *Memory) SetAge(age uint64) error {
	return m.write(func() { m.gc.age = age })
}

// Fences implements GCStore.
func (m *Memory) Fences() (map[protocol.NodeID]uint64, error) {
	if err := m.gate.enter(); err != nil {
		return nil, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := maps.Clone(m.gc.fences)
	if out == nil {
		out = make(map[protocol.NodeID]uint64)
	}
	return out, nil
}

// SetFences implements GCStore.
func (m *Memory) SetFences(fences map[protocol.NodeID]uint64) error {
	return m.write(func() {
		if m.gc.fences == nil {
			m.gc.fences = make(map[protocol.NodeID]uint64)
		}
		maps.Copy(m.gc.fences, fences)
	})
}

// QueueGC implements GCStore.
func (m *Memory) QueueGC(items []GCItem) error {
	return m.write(func() {
		if m.gc.queue == nil {
			m.gc.queue = make(map[GCItem]struct{})
		}
		for _, it := range items {
			m.gc.queue[it] = struct{}{}
		}
	})
}

// GCQueue implements GCStore.
func (m *Memory) GCQueue(start string, limit int) ([]GCItem, error) {
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	if err := m.gate.enter(); err != nil {
		return nil, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	var items []GCItem
	for it := range m.gc.queue {
		if it.Key >= start {
			items = append(items, it)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(items, func(a, b GCItem) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.Version < b.Version:
			return -1
		case a.Version > b.Version:
			return 1
		}
		return 0
	})
	return items[:min(limit, len(items))], nil
}

// DequeueGC implements GCStore.
func (m *Memory) DequeueGC(items []GCItem) error {
	return m.write(func() {
		for _, it := range items {
			delete(m.gc.queue, it)
		}
	})
}

// RemoveMany implements GCStore.
func (m *Memory) RemoveMany(expect []Entry) ([]bool, error) {
	if err := m.gate.enter(); err != nil {
		return nil, err
	}
	defer m.gate.exit()
	if err := checkRemoveMany(expect); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	removed := make([]bool, len(expect))
	for i, e := range expect {
		if cur, ok := m.regs[e.Key]; ok && cur.Equal(e.Register) {
			delete(m.regs, e.Key)
			removed[i] = true
		}
	}
	return removed, nil
}

// write runs fn under the write lock, if the store is open.
func (m *Memory) write(fn func()) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.exit()
	m.mu.Lock()
	defer m.mu.Unlock()
	fn()
	return nil
}
