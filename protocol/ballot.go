package protocol

import (
	"errors"
	"fmt"
	"math"
)

// MaxCounter is the highest ballot counter a proposer ever uses, and
// MaxVersion the highest version a write ever gives a register. Counters and
// versions never wrap: a proposer whose counter reached MaxCounter answers
// ErrExhausted instead of using counter 0 again (which would break
// PROTOCOL.md §2 on every key), a change that would take a version past
// MaxVersion is refused with ErrExhausted, and a ballot or version shown by a
// peer above them is bad input. They sit far below 2^64 so that every sum
// the proposer makes with them (a ceiling step, version + 1) stays in range,
// and far above anything a cluster reaches: 2^62 counters at a million
// ballots a second last 146,000 years. MaxVersion is MaxCounter because GC
// fast-forwards counters past versions (§9).
const (
	MaxCounter uint64 = 1 << 62
	MaxVersion uint64 = MaxCounter
	// MaxAge is the highest age a proposer takes (deletion GC, §9): an age
	// never wraps to 0, which every fence would refuse. Forget at MaxAge
	// fails with ErrExhausted.
	MaxAge uint64 = MaxCounter
)

// ErrExhausted: a ballot counter, a version or an age reached its maximum
// (MaxCounter, MaxVersion, MaxAge); the request was not applied. Only bad
// input (a peer that showed a counter near 2^64) or a bug gets there.
var ErrExhausted = errors.New("caspaxos/protocol: ballot counter, version or age exhausted (near 2^64; bad input from a peer?); not applied")

// addCapped returns a + b, or limit if that is above limit (the sum never
// wraps).
func addCapped(a, b, limit uint64) uint64 {
	if b > math.MaxUint64-a || a+b > limit {
		return limit
	}
	return a + b
}

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
