package storage

import (
	"errors"

	"github.com/caspaxos/caspaxos/protocol"
)

// Errors every Store reports the same way. Match them with errors.Is.
var (
	// ErrClosed: the store was closed, or it stopped for good (then the error
	// also matches ErrSyncFailed or ErrCorrupt, whichever stopped it).
	ErrClosed = errors.New("caspaxos/storage: store is closed")
	// ErrCorrupt: a record failed its checksum or could not be decoded. The
	// store never returns the damaged data.
	ErrCorrupt = errors.New("caspaxos/storage: corrupt record")
	// ErrLocked: another process, or another open store of this process,
	// holds the data directory.
	ErrLocked = errors.New("caspaxos/storage: data directory is in use by another process")
	// ErrFormat: the data directory was written by an unknown format version.
	ErrFormat = errors.New("caspaxos/storage: unknown on-disk format")
	// ErrSyncFailed: an fsync failed. The store is stopped for good (fail-stop,
	// PROTOCOL.md §10): the page cache may have dropped what it held, so no
	// later write or read can be trusted. The failing call and every later
	// one (Close excepted) return an error matching ErrSyncFailed and
	// ErrClosed and wrapping the cause.
	ErrSyncFailed = errors.New("caspaxos/storage: fsync failed; store stopped")
)

// Entry is one register write.
type Entry struct {
	Key      string
	Register protocol.Register
}

// Store is an acceptor's durable state. All methods are safe for concurrent use.
//
// Ownership: a Store copies what it keeps. The caller may modify entries and
// their Values once Apply returns, and owns every Register a Store hands out
// (from Get, or to Scan's fn); modifying it never changes the store.
type Store interface {
	// Get returns the register stored for key, or the zero Register if the
	// key has none. It returns only what an Apply has already made durable:
	// if an Apply of key is still syncing, Get waits for it.
	// A damaged record gives an error matching ErrCorrupt, never its data.
	Get(key string) (protocol.Register, error)

	// Apply writes entries durably (fsync) and returns once they are on
	// stable storage; the write is atomic: after a crash, all of entries or
	// none of them are found. If a key appears more than once, the last entry
	// wins. An empty entries is a no-op. Concurrent Applys share syncs
	// (group commit). After an error nothing in entries may be assumed
	// written (nor assumed not written); ErrSyncFailed stops the store.
	Apply(entries []Entry) error

	// Remove deletes the register of key if it still equals expect (same
	// Promise, Accepted and State), durably; it reports whether it did. It
	// returns false for a key that holds no register. Remove is atomic with
	// respect to concurrent Applys of key: one of them happens entirely
	// first. (Deletion GC, PROTOCOL.md §9 step 4.)
	Remove(key string, expect protocol.Register) (bool, error)

	// Scan calls fn with every key at or after start, in byte order of the
	// keys, with its register, until fn returns false. It reads a consistent
	// snapshot taken when it starts (an Apply made during the scan may or may
	// not be seen by it, but never half of one) and holds no lock that blocks
	// Apply, so fn may call the store. If the store is closed during the scan,
	// Scan returns ErrClosed at its next key. Membership catch-up walks all
	// keys with it (PROTOCOL.md §8).
	Scan(start string, fn func(key string, reg protocol.Register) bool) error

	// Ceiling returns the proposer's persisted ballot ceiling (0 if none).
	Ceiling() (uint64, error)
	// SetCeiling raises the stored ceiling to c, durably, before it returns.
	// The ceiling never goes down: a c at or below the stored one changes
	// nothing (and still returns once the stored one is durable), so a
	// lower ceiling asked for by a confused caller (a counter that wrapped,
	// two proposers on one store) can never let a restart reuse a ballot
	// counter (PROTOCOL.md §2). Concurrent SetCeilings leave the highest.
	SetCeiling(c uint64) error

	// GCStore is deletion GC's durable state (meta.go).
	GCStore

	// AcceptorStore is the acceptor's ceiling and its unsynced promise
	// writes (acceptor.go, PROTOCOL.md §12).
	AcceptorStore

	// AttachedStore is the index of the keys attached to leases
	// (attached.go).
	AttachedStore

	// Close waits for the calls in progress, then releases the store.
	// Further calls, Close included, return ErrClosed.
	Close() error
}
