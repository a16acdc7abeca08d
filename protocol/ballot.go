package protocol

import "fmt"

// NodeID names a node (a proposer, an acceptor, or both). IDs are never
// reused for a different node, and 0 is not a valid ID.
type NodeID uint64

// Ballot orders attempts on a register: by Counter, then by Proposer.
//
// PROTOCOL.md §2: every attempt uses a ballot no other attempt has ever used.
// Two proposers never share a ballot because Proposer differs; one proposer
// never reuses a Counter because it persists a ceiling before using counters
// below it (see Proposer and Ready.Ceiling), so a restart continues above
// every counter it may have used before.
type Ballot struct {
	Counter  uint64
	Proposer NodeID
}

// IsZero reports whether b is the zero ballot, lower than every real ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// Compare returns -1, 0 or +1 as b is lower than, equal to or higher than o.
func (b Ballot) Compare(o Ballot) int {
	switch {
	case b.Counter < o.Counter:
		return -1
	case b.Counter > o.Counter:
		return 1
	case b.Proposer < o.Proposer:
		return -1
	case b.Proposer > o.Proposer:
		return 1
	default:
		return 0
	}
}

// Less reports whether b is strictly lower than o.
func (b Ballot) Less(o Ballot) bool { return b.Compare(o) < 0 }

// maxBallot returns the higher of two ballots.
func maxBallot(a, b Ballot) Ballot {
	if a.Less(b) {
		return b
	}
	return a
}

func (b Ballot) String() string {
	if b.IsZero() {
		return "0"
	}
	return fmt.Sprintf("%d.%d", b.Counter, b.Proposer)
}
