package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/caspaxos/caspaxos/protocol"
)

// Get implements Store.
func (s *Pebble) Get(key string) (protocol.Register, error) {
	if err := s.gate.enter(); err != nil {
		return protocol.Register{}, err
	}
	defer s.gate.exit()
	k := registerKey(key)
	raw, found, err := s.read(k)
	if err != nil || !found {
		return protocol.Register{}, err
	}
	return decodeRegister(k, raw)
}

// read returns a copy of the record under pebbleKey, once no write of it
// is still syncing (pendingWrites). found is false if there is none.
func (s *Pebble) read(pebbleKey []byte) (raw []byte, found bool, err error) {
	val, closer, err := s.db.Get(pebbleKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		err = nil
	case err != nil:
		err = s.readError(keyName(pebbleKey), err)
	default:
		raw, found = append([]byte(nil), val...), true
		err = closer.Close()
	}
	s.pending.wait(string(pebbleKey))
	if stopped := s.gate.failure(); stopped != nil {
		return nil, false, stopped
	}
	return raw, found, err
}

// readError wraps an error Pebble returned for a read of what.
func (s *Pebble) readError(what string, err error) error {
	if isPebbleCorruption(err) {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	return fmt.Errorf("caspaxos/storage: read %s: %w", what, err)
}

// Apply implements Store: one Pebble batch, committed with Sync.
func (s *Pebble) Apply(entries []Entry) error { return s.apply(entries, pebble.Sync) }

// apply writes entries in one Pebble batch committed with opts.
func (s *Pebble) apply(entries []Entry, opts *pebble.WriteOptions) error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	defer s.gate.exit()
	if len(entries) == 0 {
		return nil
	}
	if err := checkEntries(entries); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	keys := make([]string, len(entries))
	for i, e := range entries {
		k := registerKey(e.Key)
		keys[i] = string(k)
		// Encoded in place in the batch's buffer: no copy of the value.
		op := b.SetDeferred(len(k), registerBytes(e.Register))
		copy(op.Key, k)
		encodeRegisterInto(op.Value, k, e.Register)
		if err := op.Finish(); err != nil {
			return fmt.Errorf("caspaxos/storage: apply: %w", err)
		}
	}
	if err := s.indexAttached(b, entries); err != nil {
		return fmt.Errorf("caspaxos/storage: apply: %w", err)
	}
	s.writeMu.RLock()
	err := s.commitWith(b, keys, opts)
	s.writeMu.RUnlock()
	if err != nil {
		return err
	}
	if opts == pebble.Sync { // PebbleStats counts durable writes only
		s.applies.Add(1)
		s.entries.Add(uint64(len(entries)))
	}
	return nil
}

// commit applies b with Sync and reports a failure; keys are the Pebble
// keys b writes, registered as pending while it syncs.
func (s *Pebble) commit(b *pebble.Batch, keys []string) error {
	return s.commitWith(b, keys, pebble.Sync)
}

// commitWith is commit with the given write options (pebble.NoSync: the
// keys are pending only until the batch is applied).
func (s *Pebble) commitWith(b *pebble.Batch, keys []string, opts *pebble.WriteOptions) error {
	done := make(chan struct{})
	s.pending.add(keys, done)
	err := s.db.Apply(b, opts)
	// A failed sync has stopped the store before DB.Apply returned (see
	// pebbleLogger), so readers released by finish see the stop.
	s.pending.finish(keys, done)
	if stopped := s.gate.failure(); stopped != nil {
		return stopped
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: commit: %w", err)
	}
	return nil
}

// Remove implements Store, under writeMu held exclusively (see Pebble).
func (s *Pebble) Remove(key string, expect protocol.Register) (bool, error) {
	if err := s.gate.enter(); err != nil {
		return false, err
	}
	defer s.gate.exit()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	k := registerKey(key)
	raw, found, err := s.read(k)
	if err != nil || !found {
		return false, err
	}
	cur, err := decodeRegister(k, raw)
	if err != nil {
		return false, err
	}
	if !cur.Equal(expect) {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(k, nil); err != nil {
		return false, fmt.Errorf("caspaxos/storage: remove: %w", err)
	}
	if err := unindexAttached(b, key, cur.State.Lease, 0); err != nil {
		return false, fmt.Errorf("caspaxos/storage: remove: %w", err)
	}
	if err := s.commit(b, []string{string(k)}); err != nil {
		return false, err
	}
	return true, nil
}

// Scan implements Store over a Pebble iterator, which reads the snapshot
// of the database taken when it is created.
func (s *Pebble) Scan(start string, fn func(key string, reg protocol.Register) bool) error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	defer s.gate.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: registerKey(start),
		UpperBound: []byte{prefixRegister + 1},
	})
	if err != nil {
		return fmt.Errorf("caspaxos/storage: scan: %w", err)
	}
	err = s.scan(it, fn)
	if cerr := it.Close(); err == nil && cerr != nil {
		err = s.readError("scan", cerr)
	}
	return err
}

// scan walks it, calling fn, until the end, fn's false, an error, or Close.
func (s *Pebble) scan(it *pebble.Iterator, fn func(key string, reg protocol.Register) bool) error {
	for valid := it.First(); valid; valid = it.Next() {
		if s.gate.isClosed() {
			return ErrClosed
		}
		k := it.Key() // valid until Next
		raw, err := it.ValueAndErr()
		if err != nil {
			return s.readError(keyName(k), err)
		}
		reg, err := decodeRegister(k, raw)
		if err != nil {
			return err
		}
		s.pending.wait(string(k))
		if stopped := s.gate.failure(); stopped != nil {
			return stopped
		}
		if !fn(string(k[1:]), reg) {
			return nil
		}
	}
	if err := it.Error(); err != nil {
		return s.readError("scan", err)
	}
	return nil
}

// Ceiling implements Store.
func (s *Pebble) Ceiling() (uint64, error) {
	if err := s.gate.enter(); err != nil {
		return 0, err
	}
	defer s.gate.exit()
	raw, found, err := s.read([]byte(ceilingKey))
	if err != nil || !found {
		return 0, err
	}
	return decodeCeiling(raw)
}

// SetCeiling implements Store.
func (s *Pebble) SetCeiling(c uint64) error { return s.raiseUint64(ceilingKey, c) }

// raiseUint64 stores c in the 8-byte record under key (a ceiling) unless
// a higher value is there, durably: read, compare and write under ceilMu,
// so the stored value never goes down, even with calls racing. A no-op
// write still commits with Sync, so it returns only once what was stored
// before is durable.
func (s *Pebble) raiseUint64(key string, c uint64) error {
	if err := s.gate.enter(); err != nil {
		return err
	}
	defer s.gate.exit()
	s.ceilMu.Lock()
	defer s.ceilMu.Unlock()
	k := []byte(key)
	raw, found, err := s.read(k)
	if err != nil {
		return err
	}
	if found {
		cur, err := decodeUint64(k, raw)
		if err != nil {
			return err
		}
		c = max(c, cur)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(k, encodeUint64(k, c), nil); err != nil {
		return fmt.Errorf("caspaxos/storage: set %s: %w", keyName(k), err)
	}
	return s.commit(b, []string{key})
}
