package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
)

// GCItem is one entry of the deletion GC's queue: a key whose register held
// no live value (a tombstone, or a register with no state) at Version.
// The queue holds one item per (Key, Version): a key deleted again after
// re-creation is queued again under its new version, so that finishing the
// older item never drops the newer one.
type GCItem struct {
	Key     string
	Version uint64
}

// GCStore is the durable state of deletion GC (PROTOCOL.md §9); every Store
// is one. All methods are safe for concurrent use, and every write is
// durable (fsync) before it returns, as Apply's are.
type GCStore interface {
	// Age returns the proposer's persisted age (0 if none).
	Age() (uint64, error)
	// SetAge stores the proposer's age (§9 step 2). It stores age as given,
	// lower or not: keeping it rising is the proposer's duty.
	SetAge(age uint64) error

	// Fences returns the acceptor's persisted minimum age of every proposer
	// that has one (§9 step 3); an empty map if none has. The caller owns
	// the map.
	Fences() (map[protocol.NodeID]uint64, error)
	// SetFences stores the given proposers' minimum ages, atomically, as
	// given; other proposers' are unchanged. Keeping each fence rising is
	// the acceptor service's duty. An empty map is a no-op.
	SetFences(fences map[protocol.NodeID]uint64) error

	// QueueGC adds items to the GC queue, atomically. An item already
	// queued stays queued once. An empty items is a no-op.
	QueueGC(items []GCItem) error
	// GCQueue returns up to limit queued items whose Key is at or after
	// start, ordered by Key, then Version. A QueueGC still syncing may or
	// may not be seen. limit must be positive.
	GCQueue(start string, limit int) ([]GCItem, error)
	// DequeueGC removes items from the queue, atomically; items not queued
	// are ignored. An empty items is a no-op.
	DequeueGC(items []GCItem) error

	// RemoveMany is Remove for many keys in one durable write: it deletes
	// the register of each entry's Key if it still equals the entry's
	// Register, and reports per entry whether it did. It is atomic with
	// respect to concurrent Applys and Removes of those keys. Each Key
	// appears at most once.
	RemoveMany(expect []Entry) ([]bool, error)
}

// Record keys and bodies of the GC state; drawn in the package documentation.
const (
	prefixGCQueue byte = 'q'

	ageKey      = string(prefixMeta) + "age"
	fencePrefix = string(prefixMeta) + "fence/"
	uint64Bytes = 8
)

// fenceKey returns the Pebble key of proposer id's fence record.
func fenceKey(id protocol.NodeID) []byte {
	k := make([]byte, len(fencePrefix)+uint64Bytes)
	copy(k, fencePrefix)
	binary.BigEndian.PutUint64(k[len(fencePrefix):], uint64(id))
	return k
}

// fenceProposer returns the proposer of a fence record's Pebble key.
func fenceProposer(pebbleKey []byte) (protocol.NodeID, error) {
	if len(pebbleKey) != len(fencePrefix)+uint64Bytes {
		return 0, fmt.Errorf("%w: %s: fence key of %d bytes, want %d",
			ErrCorrupt, keyName(pebbleKey), len(pebbleKey), len(fencePrefix)+uint64Bytes)
	}
	return protocol.NodeID(binary.BigEndian.Uint64(pebbleKey[len(fencePrefix):])), nil
}

// gcQueueKey returns the Pebble key of a GC queue item: the register key
// escaped (0x00 becomes 0x00 0xFF) and terminated by 0x00 0x01, then the
// version big-endian, so that Pebble's byte order is the order of (Key,
// Version) and one key's items are adjacent.
func gcQueueKey(it GCItem) []byte {
	k := gcQueueBound(it.Key)
	k = append(k, 0x00, 0x01)
	return binary.BigEndian.AppendUint64(k, it.Version)
}

// gcQueueBound returns 'q' and the escaped key, without terminator: every
// item of a key at or after key sorts at or after it.
func gcQueueBound(key string) []byte {
	k := make([]byte, 0, 1+len(key)+2+uint64Bytes)
	k = append(k, prefixGCQueue)
	for i := 0; i < len(key); i++ {
		k = append(k, key[i])
		if key[i] == 0x00 {
			k = append(k, 0xFF)
		}
	}
	return k
}

// gcQueueItem decodes a GC queue item's Pebble key.
func gcQueueItem(pebbleKey []byte) (GCItem, error) {
	bad := fmt.Errorf("%w: %s: malformed GC queue key", ErrCorrupt, keyName(pebbleKey))
	if len(pebbleKey) < 1+2+uint64Bytes || pebbleKey[0] != prefixGCQueue {
		return GCItem{}, bad
	}
	b := pebbleKey[1 : len(pebbleKey)-uint64Bytes]
	key := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0x00 {
			key = append(key, b[i])
			continue
		}
		if i+1 >= len(b) {
			return GCItem{}, bad
		}
		switch {
		case b[i+1] == 0xFF:
			key = append(key, 0x00)
			i++
		case b[i+1] == 0x01 && i+2 == len(b):
			return GCItem{Key: string(key), Version: binary.BigEndian.Uint64(pebbleKey[len(pebbleKey)-uint64Bytes:])}, nil
		default:
			return GCItem{}, bad
		}
	}
	return GCItem{}, bad
}

// encodeUint64 returns the record of an 8-byte body (ceiling, age, fence)
// under pebbleKey.
func encodeUint64(pebbleKey []byte, v uint64) []byte {
	rec := make([]byte, headerBytes+uint64Bytes)
	binary.LittleEndian.PutUint64(rec[headerBytes:], v)
	return seal(pebbleKey, rec)
}

// decodeUint64 checks and decodes a record of an 8-byte body.
func decodeUint64(pebbleKey, rec []byte) (uint64, error) {
	b, err := unseal(pebbleKey, rec)
	if err != nil {
		return 0, err
	}
	if len(b) != uint64Bytes {
		return 0, fmt.Errorf("%w: %s: body has %d bytes, want %d", ErrCorrupt, keyName(pebbleKey), len(b), uint64Bytes)
	}
	return binary.LittleEndian.Uint64(b), nil
}

// encodeEmpty returns the record of an empty body (a GC queue item: all it
// says is in its key).
func encodeEmpty(pebbleKey []byte) []byte {
	return seal(pebbleKey, make([]byte, headerBytes))
}

// decodeEmpty checks a record of an empty body.
func decodeEmpty(pebbleKey, rec []byte) error {
	b, err := unseal(pebbleKey, rec)
	if err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %s: body has %d bytes, want none", ErrCorrupt, keyName(pebbleKey), len(b))
	}
	return nil
}

func errLimit(limit int) error {
	return fmt.Errorf("caspaxos/storage: GCQueue limit %d must be positive", limit)
}

// checkRemoveMany refuses a key given twice.
func checkRemoveMany(expect []Entry) error {
	seen := make(map[string]bool, len(expect))
	for _, e := range expect {
		if seen[e.Key] {
			return fmt.Errorf("caspaxos/storage: RemoveMany given key %q twice", e.Key)
		}
		seen[e.Key] = true
	}
	return nil
}
