package protocol

// Watching (COORDINATION.md, Watch): a node learns of accepts for watched
// keys from hint streams of acceptors, confirms each candidate with a
// linearizable read, and delivers what the read returned. This file is the
// pure part: when the hint streams cover every accept quorum, whether a hint
// is worth a read, whether a read settled a hint, and what one watcher of
// one key is delivered. Streams, reads, timers and watchers are the caller's
// (server/watch).
//
// The guarantees these rules give a watcher of a key, given that every state
// passed to WatchDecide was returned by a linearizable read: it never sees a
// value that was not chosen; the versions it sees only rise; its last
// delivery is the key's latest state once the key stops changing and the
// caller has read it (the caller's duty: while HintsWhole, every hint
// newer than the mark is read until WatchSettled; otherwise every watched
// key is read on a timer); and a jump (PrevVersion ≠ Version − 1) shows
// that states were merged or passed over between two deliveries.

// HintsWhole reports whether hint streams from the acceptors in streaming
// cover every accept quorum of c: at least len(AcceptSet) − AcceptQuorum + 1
// members of the accept set, the caller's own acceptor counted like any
// other. Every chosen state was accepted by AcceptQuorum members of the
// accept set, so while HintsWhole holds, every chosen change of a watched
// key produces a hint on some stream. Members of streaming outside the
// accept set (a node being removed, a stream opened under an older
// configuration) do not count; an ID listed twice counts once.
func HintsWhole(c Config, streaming []NodeID) bool {
	need := len(c.AcceptSet) - c.AcceptQuorum + 1
	if need < 1 {
		panic("caspaxos/protocol: HintsWhole needs a configuration with an accept quorum within its accept set")
	}
	have := 0
	for i, id := range streaming {
		if c.inAcceptSet(id) && !containsBefore(streaming, i, id) {
			have++
		}
	}
	return have >= need
}

func containsBefore(ids []NodeID, i int, id NodeID) bool {
	for _, x := range ids[:i] {
		if x == id {
			return true
		}
	}
	return false
}

// WatchMark is what one watcher of one key was delivered last. The zero
// WatchMark is a watcher that was delivered nothing (or resumes from
// version 0).
type WatchMark struct {
	// Version is the highest version delivered (or the version the watcher
	// resumes from); it never goes down.
	Version uint64
	// Deleted: the last delivery said the key is deleted (a tombstone, or
	// a tombstone already collected).
	Deleted bool
}

// WatchEvent is one delivery to a watcher of a key.
//
// State is the key's state: live, a tombstone (Deleted with its Version),
// or, for a tombstone that deletion GC already collected, Deleted with
// Version 0 ("deleted, no version"). PrevVersion is the watcher's mark
// before this event: the previous delivered version, 0 for the first. A
// jump, PrevVersion ≠ Version − 1, shows that the watcher missed states in
// between (merged by composition, or superseded before they were read).
type WatchEvent struct {
	State       State
	PrevVersion uint64
}

// Jump reports whether the event skips versions: states between
// PrevVersion and Version were merged or superseded. A collected tombstone
// (no version) is not a jump.
func (e WatchEvent) Jump() bool {
	return e.State.Version != 0 && e.State.Version != e.PrevVersion+1
}

// WatchDecide decides whether a watcher at mark is delivered confirmed, a
// state of the key that a linearizable read returned, and returns the
// event and the watcher's next mark.
//
//   - A version above the mark is delivered: a live value, or a tombstone
//     as deleted with its version.
//   - An absent state (Version 0: never written, or its tombstone was
//     collected) is delivered as deleted with no version to a watcher
//     whose last delivery was live; the mark keeps its version, so that a
//     re-created key, whose version is above the tombstone's (PROTOCOL.md
//     §7, §9), is delivered too.
//   - Anything else (the same version, an older one, absent after a
//     delivered deletion or to a watcher that saw nothing) is not.
func WatchDecide(mark WatchMark, confirmed State) (ev WatchEvent, next WatchMark, deliver bool) {
	switch {
	case confirmed.Version > mark.Version:
		return WatchEvent{State: confirmed, PrevVersion: mark.Version},
			WatchMark{Version: confirmed.Version, Deleted: confirmed.Deleted}, true
	case confirmed.Version == 0 && mark.Version > 0 && !mark.Deleted:
		return WatchEvent{State: State{Deleted: true}, PrevVersion: mark.Version},
			WatchMark{Version: mark.Version, Deleted: true}, true
	default:
		return WatchEvent{}, mark, false
	}
}

// WatchHintNewer reports whether a hint of hinted, a state an acceptor
// accepted (not necessarily chosen), may change what a watcher at mark is
// delivered, so that it is worth a confirming read. Identity writes and
// repairs keep the version, so their hints cost no read.
func WatchHintNewer(mark WatchMark, hinted State) bool {
	return hinted.Version > mark.Version
}

// WatchSettled reports whether a confirming read that returned read settles
// a hint of hinted. It does when the read shows the hinted version or a
// later one. It does not when the read returned an older state: the hinted
// accept may not have reached an accept quorum yet (the hint's acceptor
// accepted first) and may still be chosen without another hint from a
// streaming acceptor, so the caller keeps the hint and reads again later;
// or it was a minority accept that is never chosen, which the caller stops
// reading for after a bound and leaves to the next write or resync.
func WatchSettled(hinted, read State) bool {
	return read.Version >= hinted.Version
}
