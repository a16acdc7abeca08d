package storage

import (
	"slices"
	"strings"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
)

// Memory is a Store in memory, for unit tests and the simulator. An Apply
// is "durable" when it returns; nothing survives the process. The product
// never uses it.
//
// Values are copied on the way in and on the way out, so no caller can
// change what is stored through a slice it holds.
type Memory struct {
	gate gate

	mu      sync.RWMutex
	regs    map[string]protocol.Register // values owned by the store, never modified
	ceiling uint64
	// accCeiling is the acceptor's ceiling (AcceptorStore).
	accCeiling uint64
	gc         memoryGC // deletion GC's state (memory_meta.go)
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{regs: make(map[string]protocol.Register)}
}

// Get implements Store.
func (m *Memory) Get(key string) (protocol.Register, error) {
	if err := m.gate.enter(); err != nil {
		return protocol.Register{}, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	reg := m.regs[key]
	m.mu.RUnlock()
	return cloneRegister(reg), nil
}

// Apply implements Store.
func (m *Memory) Apply(entries []Entry) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.exit()
	if err := checkEntries(entries); err != nil {
		return err
	}
	copies := make([]Entry, len(entries))
	for i, e := range entries {
		copies[i] = Entry{Key: e.Key, Register: cloneRegister(e.Register)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range copies {
		m.regs[e.Key] = e.Register
	}
	return nil
}

// Remove implements Store.
func (m *Memory) Remove(key string, expect protocol.Register) (bool, error) {
	if err := m.gate.enter(); err != nil {
		return false, err
	}
	defer m.gate.exit()
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.regs[key]
	if !ok || !cur.Equal(expect) {
		return false, nil
	}
	delete(m.regs, key)
	return true, nil
}

// Scan implements Store. It copies the keys at or after start and their
// registers (sharing the stored values, which are never modified) under a
// read lock, then calls fn without holding any lock.
func (m *Memory) Scan(start string, fn func(key string, reg protocol.Register) bool) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.exit()
	snapshot := m.snapshot(start)
	for _, e := range snapshot {
		if m.gate.isClosed() {
			return ErrClosed
		}
		if !fn(e.Key, cloneRegister(e.Register)) {
			return nil
		}
	}
	return nil
}

// snapshot returns the registers of the keys at or after start, in key order.
func (m *Memory) snapshot(start string) []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Entry
	for k, reg := range m.regs {
		if k >= start {
			out = append(out, Entry{Key: k, Register: reg})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Ceiling implements Store.
func (m *Memory) Ceiling() (uint64, error) {
	if err := m.gate.enter(); err != nil {
		return 0, err
	}
	defer m.gate.exit()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.ceiling, nil
}

// SetCeiling implements Store.
func (m *Memory) SetCeiling(c uint64) error {
	if err := m.gate.enter(); err != nil {
		return err
	}
	defer m.gate.exit()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ceiling = max(m.ceiling, c)
	return nil
}

// Close implements Store.
func (m *Memory) Close() error {
	return m.gate.close()
}

// cloneRegister returns reg with a Value of its own (nil if empty).
func cloneRegister(reg protocol.Register) protocol.Register {
	if len(reg.State.Value) == 0 {
		reg.State.Value = nil
	} else {
		reg.State.Value = slices.Clone(reg.State.Value)
	}
	return reg
}
