package protocol

// Tombstone names a register deletion GC collects: Key, whose state (a
// tombstone of Version, or no state at all) was accepted under Ballot by
// every acceptor, leaving Promise there (PROTOCOL.md §9 step 1; the Result
// of Proposer.ProposeGC carries all three).
type Tombstone struct {
	Key     string
	Ballot  Ballot
	Version uint64
	Promise Ballot
}

// Collect is what deletion GC's step 4 does with one acceptor's register
// for a Tombstone (see Collectible).
type Collect uint8

const (
	// CollectDone: nothing to remove, and nothing ever will be for this
	// round: the register holds a live value again, or nothing at all.
	// Step 4 is done on this acceptor.
	CollectDone Collect = iota + 1
	// CollectLater: the register still holds no value, but it was written
	// or promised since the round's GC write, so it is not this round's to
	// remove. Step 4 is not done: the key stays queued, and a later round,
	// with a fresh GC write, collects it.
	CollectLater
	// CollectRemove: the register still holds the state the round's GC
	// write accepted, under its ballot, with no promise above the one it
	// left: remove it.
	CollectRemove
)

func (c Collect) String() string {
	switch c {
	case CollectDone:
		return "done"
	case CollectLater:
		return "later"
	case CollectRemove:
		return "remove"
	}
	return "invalid"
}

// Collectible is deletion GC's step 4 rule (PROTOCOL.md §9): what to do with
// reg, an acceptor's register for t.Key, the newest stepped (a write still
// in flight to storage is the caller's to wait for). The register is removed
// only if it still holds a state with no value accepted under the
// tombstone's ballot, and no promise above the tombstone's promise.
func Collectible(t Tombstone, reg Register) Collect {
	switch {
	case reg.State.Exists() || reg.Equal(Register{}):
		// Live again (a write after the delete), or nothing there (an
		// earlier removal, or an acceptor that never saw the key).
		return CollectDone
	case reg.Accepted != t.Ballot:
		// Accepted again since the GC write, still with no value: a later
		// round's GC write is over this state.
		return CollectLater
	case t.Promise.Less(reg.Promise):
		// A promise above the GC write's went to a proposer that has read
		// the tombstone and may yet accept on top of it: removing the
		// promise would let a lower ballot be accepted underneath, by a
		// quorum that never saw it.
		return CollectLater
	default:
		return CollectRemove
	}
}
