package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/caspaxos/caspaxos/protocol"
)

// Deletion GC's state in Pebble (GCStore). The records are drawn in the
// package documentation. Every write is one Pebble batch committed with
// Sync, like Apply's.

// Age implements GCStore.
func (s *Pebble) Age() (uint64, error) {
	if err := s.gate.enter(); err != nil {
		return 0, err
	}
	defer s.gate.exit()
	raw, found, err := s.read([]byte(ageKey))
	if err != nil || !found {
		return 0, err
	}
	return decodeUint64([]byte(ageKey), raw)
}

// SetAge implements GCStore.
func (s *Pebble) SetAge(age uint64) error {
	return s.writeMeta("set age", func(b *pebble.Batch) error {
		return b.Set([]byte(ageKey), encodeUint64([]byte(ageKey), age), nil)
	}, []string{ageKey})
}

// Fences implements GCStore.
func (s *Pebble) Fences() (map[protocol.NodeID]uint64, error) {
	fences := make(map[protocol.NodeID]uint64)
	err := s.iterate([]byte(fencePrefix), prefixEnd([]byte(fencePrefix)), func(k, raw []byte) (bool, error) {
		id, err := fenceProposer(k)
		if err != nil {
			return false, err
		}
		age, err := decodeUint64(k, raw)
		fences[id] = age
		return err == nil, err
	})
	return fences, err
}

// SetFences implements GCStore.
func (s *Pebble) SetFences(fences map[protocol.NodeID]uint64) error {
	if len(fences) == 0 {
		return s.noop()
	}
	var keys []string
	return s.writeMeta("set fences", func(b *pebble.Batch) error {
		for id, age := range fences {
			k := fenceKey(id)
			keys = append(keys, string(k))
			if err := b.Set(k, encodeUint64(k, age), nil); err != nil {
				return err
			}
		}
		return nil
	}, keys)
}

// QueueGC implements GCStore.
func (s *Pebble) QueueGC(items []GCItem) error {
	if len(items) == 0 {
		return s.noop()
	}
	return s.writeMeta("queue for GC", func(b *pebble.Batch) error {
		for _, it := range items {
			k := gcQueueKey(it)
			if err := b.Set(k, encodeEmpty(k), nil); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// GCQueue implements GCStore.
func (s *Pebble) GCQueue(start string, limit int) ([]GCItem, error) {
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	lower := gcQueueBound(start)
	var items []GCItem
	err := s.iterate(lower, []byte{prefixGCQueue + 1}, func(k, raw []byte) (bool, error) {
		it, err := gcQueueItem(k)
		if err == nil {
			err = decodeEmpty(k, raw)
		}
		if err != nil {
			return false, err
		}
		items = append(items, it)
		return len(items) < limit, nil
	})
	return items, err
}

// DequeueGC implements GCStore.
func (s *Pebble) DequeueGC(items []GCItem) error {
	if len(items) == 0 {
		return s.noop()
	}
	return s.writeMeta("dequeue from GC", func(b *pebble.Batch) error {
		for _, it := range items {
			if err := b.Delete(gcQueueKey(it), nil); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// RemoveMany implements GCStore, under writeMu held exclusively like
// Remove: it reads and compares every key, then deletes the matching ones
// in one synced batch, while no Apply is in flight.
func (s *Pebble) RemoveMany(expect []Entry) ([]bool, error) {
	if err := s.gate.enter(); err != nil {
		return nil, err
	}
	defer s.gate.exit()
	if err := checkRemoveMany(expect); err != nil {
		return nil, err
	}
	removed := make([]bool, len(expect))
	if len(expect) == 0 {
		return removed, nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var keys []string
	for i, e := range expect {
		k := registerKey(e.Key)
		raw, found, err := s.read(k)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		cur, err := decodeRegister(k, raw)
		if err != nil {
			return nil, err
		}
		if !cur.Equal(e.Register) {
			continue
		}
		if err := b.Delete(k, nil); err != nil {
			return nil, fmt.Errorf("caspaxos/storage: remove: %w", err)
		}
		if err := unindexAttached(b, e.Key, cur.State.Lease, 0); err != nil {
			return nil, fmt.Errorf("caspaxos/storage: remove: %w", err)
		}
		keys = append(keys, string(k))
		removed[i] = true
	}
	if len(keys) == 0 {
		return removed, nil
	}
	if err := s.commit(b, keys); err != nil {
		return nil, err
	}
	return removed, nil
}

// noop admits and releases a call that has nothing to write, so that it
// still reports a closed or stopped store.
func (s *Pebble) noop() error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	s.gate.exit()
	return nil
}

// writeMeta fills one batch with fill and commits it with Sync; keys are
// the Pebble keys readers must not see before the sync (see pendingWrites).
func (s *Pebble) writeMeta(what string, fill func(b *pebble.Batch) error, keys []string) error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	defer s.gate.exit()
	b := s.db.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return fmt.Errorf("caspaxos/storage: %s: %w", what, err)
	}
	return s.commit(b, keys)
}

// iterate calls fn with every record in [lower, upper), in key order, until
// fn returns false or an error. It reads the snapshot taken when it starts.
func (s *Pebble) iterate(lower, upper []byte, fn func(k, raw []byte) (bool, error)) error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	defer s.gate.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("caspaxos/storage: iterate: %w", err)
	}
	err = s.walk(it, fn)
	if cerr := it.Close(); err == nil && cerr != nil {
		err = s.readError("iterate", cerr)
	}
	return err
}

func (s *Pebble) walk(it *pebble.Iterator, fn func(k, raw []byte) (bool, error)) error {
	for valid := it.First(); valid; valid = it.Next() {
		if s.gate.isClosed() {
			return ErrClosed
		}
		k := it.Key()
		raw, err := it.ValueAndErr()
		if err != nil {
			return s.readError(keyName(k), err)
		}
		s.pending.wait(string(k))
		if stopped := s.gate.failure(); stopped != nil {
			return stopped
		}
		more, err := fn(k, raw)
		if err != nil || !more {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return s.readError("iterate", err)
	}
	return nil
}

// prefixEnd returns the smallest key above every key starting with p (p
// does not end in 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	return end
}
