package protocol

import (
	"fmt"
	"strings"
)

// Kind is the type of a Message.
type Kind uint8

const (
	// MsgPrepare asks an acceptor to promise Ballot (phase 1).
	MsgPrepare Kind = iota + 1
	// MsgPromise grants a prepare and carries the acceptor's Accepted ballot and State.
	MsgPromise
	// MsgAccept asks an acceptor to accept State under Ballot and, if Next is
	// not zero, to promise Next in the same write (the one-round-trip path).
	MsgAccept
	// MsgAccepted confirms an accept.
	MsgAccepted
	// MsgRead asks for the acceptor's Accepted ballot and State without a
	// promise; nothing is persisted (the read fast path). Ballot only
	// correlates the reply.
	MsgRead
	// MsgReadReply answers a read.
	MsgReadReply
	// MsgConflict refuses a prepare or an accept; Seen is the highest ballot
	// the acceptor knows, for the proposer to fast-forward past.
	MsgConflict
)

var kindNames = [...]string{
	MsgPrepare:   "Prepare",
	MsgPromise:   "Promise",
	MsgAccept:    "Accept",
	MsgAccepted:  "Accepted",
	MsgRead:      "Read",
	MsgReadReply: "ReadReply",
	MsgConflict:  "Conflict",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// IsRequest reports whether messages of this kind go from a proposer to an acceptor.
func (k Kind) IsRequest() bool { return k == MsgPrepare || k == MsgAccept || k == MsgRead }

// Message is every message of the protocol; Kind says which fields matter.
// Replies echo the request's Key and Ballot, which is how a proposer matches
// them to the attempt they answer: ballots are unique, so a reply to an
// older attempt never matches a newer one.
type Message struct {
	Kind Kind
	From NodeID
	To   NodeID
	Key  string
	// Ballot of the attempt (requests) or of the request answered (replies).
	Ballot Ballot
	// Next is the ballot an accept also promises (MsgAccept only; zero: none).
	Next Ballot
	// Accepted is the acceptor's accepted ballot (MsgPromise, MsgReadReply,
	// MsgConflict).
	Accepted Ballot
	// Seen is the highest ballot the acceptor has promised or accepted (MsgConflict).
	Seen Ballot
	// State is the value to accept (MsgAccept) or the accepted one
	// (MsgPromise, MsgReadReply).
	State State
	// Age is the sender's proposer age, for the deletion GC's fence (PROTOCOL.md §9).
	Age uint64
}

// String describes m in one line, for traces and test failures.
func (m Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %s %q b=%s", m.From, m.To, m.Kind, m.Key, m.Ballot)
	switch m.Kind {
	case MsgAccept:
		fmt.Fprintf(&b, " state=%s", m.State)
		if !m.Next.IsZero() {
			fmt.Fprintf(&b, " next=%s", m.Next)
		}
	case MsgPromise, MsgReadReply:
		fmt.Fprintf(&b, " accepted=%s state=%s", m.Accepted, m.State)
	case MsgConflict:
		fmt.Fprintf(&b, " seen=%s accepted=%s", m.Seen, m.Accepted)
	}
	return b.String()
}
