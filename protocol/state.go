package protocol

import (
	"bytes"
	"fmt"
)

// State is the client-visible content of one register.
//
// Version is 0 for a register that was never written. Every change of the
// value, a delete and a re-create included, gives a higher Version
// (PROTOCOL.md §7); identity writes and repairs keep it. A deleted register
// keeps its Version and is a tombstone: Deleted is true and Value is nil.
//
// Requests is the register's table of recent request IDs, encoded
// (EncodeRequests; see requests.go), nil when it has none. It is not part
// of the value clients read: a write that carries no table keeps it, and
// a tombstone keeps it too. Like Value, it is shared, never copied.
//
// Created is the version that began the register's current life: the
// version of the write that set it while it did not exist (PROTOCOL.md §7;
// etcd's create_revision, Consul's CreateIndex). apply keeps it on every
// later write and clears it on a delete; 0 for a tombstone, an absent
// register, or a live one written before the field existed (unknown).
//
// Attrs are a live register's attributes beside its value (Attrs).
//
// Value is shared, never copied: nobody may modify it once it is in a State.
type State struct {
	Value    []byte
	Version  uint64
	Deleted  bool
	Requests []byte
	Created  uint64
	Attrs

	// index, when it describes Requests, lets a write with a request ID
	// read and splice the table without parsing it (requestIndex). It is
	// no part of the state: Equal ignores it, and a state without it
	// reads the same.
	index *requestIndex
}

// Attrs are what a live register holds beside its value, set by the
// writes that choose to (Write.Attrs) and cleared by a delete. The store
// gives them no meaning of its own; the client API does:
//
//   - Lease is the ID of the lease the key is attached to (0: none): the
//     key ends when the lease does (etcd's lease, Consul's session).
//   - Flags are a client's opaque flags (Consul's flags).
//   - LockIndex counts the times the key was acquired as a lock (Consul's
//     LockIndex).
type Attrs struct {
	Lease     uint64
	Flags     uint64
	LockIndex uint64
}

// Exists reports whether the register holds a live value.
func (s State) Exists() bool { return s.Version > 0 && !s.Deleted }

// Equal reports whether two states are identical.
func (s State) Equal(o State) bool {
	return s.Version == o.Version && s.Deleted == o.Deleted && bytes.Equal(s.Value, o.Value) &&
		bytes.Equal(s.Requests, o.Requests) && s.Created == o.Created && s.Attrs == o.Attrs
}

func (s State) String() string {
	switch {
	case s.Version == 0:
		return "absent"
	case s.Deleted:
		return fmt.Sprintf("tombstone@v%d", s.Version)
	default:
		return fmt.Sprintf("%q@v%d", abbreviate(s.Value), s.Version)
	}
}

func abbreviate(v []byte) string {
	const limit = 16
	if len(v) <= limit {
		return string(v)
	}
	return string(v[:limit]) + "…"
}

// Register is what an acceptor stores for one key: the highest ballot it
// promised, the ballot of the state it accepted, and that state.
//
// The zero Register is a key the acceptor has never seen.
type Register struct {
	Promise  Ballot
	Accepted Ballot
	State    State
}

// Equal reports whether two registers are identical.
func (r Register) Equal(o Register) bool {
	return r.Promise == o.Promise && r.Accepted == o.Accepted && r.State.Equal(o.State)
}

func (r Register) String() string {
	return fmt.Sprintf("promise=%s accepted=%s state=%s", r.Promise, r.Accepted, r.State)
}

// WriteKind says what a change does to the state it was given.
type WriteKind uint8

const (
	// WriteKeep leaves the state as it is (a read, or a change with nothing to do).
	WriteKeep WriteKind = iota
	// WriteSet stores Write.Value, creating the register if needed.
	WriteSet
	// WriteDelete leaves a tombstone; deleting what does not exist keeps it as it is.
	WriteDelete
)

// Write is what a Change asks for. The version is not the change's to choose:
// the proposer assigns it. A change may only set a floor under it:
// MinVersion (0: none) raises the version a WriteSet or WriteDelete gives
// to at least MinVersion, so that a restore can place a key above every
// version a client may hold from before (versions still rise strictly: the
// floor only ever adds to the rule of §7).
//
// Record, when its ID is not empty, is added to the register's request
// table, even for WriteKeep (a change that records an outcome and changes
// nothing else), with the version the write gives the register (for
// WriteKeep, none): the change cannot know that version itself, since the
// proposer assigns it. The table it is added to is Table when not nil
// (which replaces the register's table, with or without a Record);
// otherwise the register's own table, from which the records of requests
// issued before PruneBelow are first removed (its horizon raised to
// PruneBelow). The second form is what exactly-once writes use: the
// register's table is spliced as encoded (spliceRequests), never decoded,
// so a write of a hot key with a full table costs a copy of it, not a
// decode and an encode. Record's ID must not be in the table (the change
// checked it: RequestCheck). A WriteDelete of a register that does not
// exist keeps it as it is, table included.
//
// Attrs, when not nil, are the attributes a WriteSet gives the register;
// nil keeps those it has (none, for a register that begins a new life).
// A WriteDelete clears them.
type Write struct {
	Kind       WriteKind
	Value      []byte
	MinVersion uint64
	Table      *RequestTable
	PruneBelow int64
	Record     RequestRecord
	Attrs      *Attrs
}

// Change computes what to do with the current state of a register.
//
// A non-nil error is a refusal (a failed compare-and-swap, say): the state is
// left as it is, and the error is handed back to the caller unchanged once
// that state is known to be chosen (PROTOCOL.md §4). A Change must be
// deterministic and free of side effects: a proposer may run it more than once
// (on retries after a conflict) and only the run whose state was chosen counts.
type Change func(cur State) (Write, error)

// apply runs w on cur. counter is the counter of the ballot the result will
// be accepted with; a register with no history takes its first version from it
// so that versions keep rising across deletion GC (PROTOCOL.md §7, §9). A
// write that would take the version past MaxVersion is refused with
// ErrExhausted (the state is left as it is), never wrapped to 0.
func apply(cur State, w Write, counter uint64) (State, error) {
	next := cur
	switch w.Kind {
	case WriteSet:
		v, err := nextVersion(cur, counter, w.MinVersion)
		if err != nil {
			return cur, err
		}
		next = State{Value: w.Value, Version: v, Requests: cur.Requests, Created: cur.Created, Attrs: cur.Attrs, index: cur.index}
		if !cur.Exists() {
			next.Created = v // a new life begins
			next.Attrs = Attrs{}
		}
		if w.Attrs != nil {
			next.Attrs = *w.Attrs
		}
	case WriteDelete:
		if !cur.Exists() {
			return cur, nil
		}
		v, err := nextVersion(cur, counter, w.MinVersion)
		if err != nil {
			return cur, err
		}
		next = State{Version: v, Deleted: true, Requests: cur.Requests, index: cur.index}
	}
	r := w.Record
	if w.Kind != WriteKeep {
		r.Version = next.Version
	}
	switch {
	case w.Table != nil && r.ID != "":
		next.Requests, next.index = EncodeRequests(w.Table.With(r)), nil
	case w.Table != nil:
		next.Requests, next.index = EncodeRequests(*w.Table), nil
	case r.ID != "":
		t, x, err := spliceState(cur, w.PruneBelow, r)
		if err != nil {
			return cur, err
		}
		next.Requests, next.index = t, x
	}
	return next, nil
}

// nextVersion is PROTOCOL.md §7's max(previous + 1, counter) for a register
// with no history, previous + 1 otherwise; never below floor (Write.MinVersion).
func nextVersion(cur State, counter, floor uint64) (uint64, error) {
	v := max(1, counter)
	if cur.Version > 0 {
		if cur.Version >= MaxVersion {
			return 0, fmt.Errorf("%w: the version is already %d", ErrExhausted, cur.Version)
		}
		v = cur.Version + 1
	}
	v = max(v, floor)
	if v > MaxVersion {
		return 0, fmt.Errorf("%w: version %d is past %d", ErrExhausted, v, MaxVersion)
	}
	return v, nil
}

// Apply is the rule by which a proposer applies a change's Write to the
// state it read (versions, tombstones, the request table), for the
// in-memory stand-ins of tests that run changes without the protocol.
// counter is the ballot counter the result would be accepted with (0:
// none, and a new register starts at version 1).
func Apply(cur State, w Write, counter uint64) (State, error) { return apply(cur, w, counter) }
