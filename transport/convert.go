// Package transport carries protocol messages and forwarded operations
// between caspaxos nodes over gRPC. It only converts and carries: it never
// decides anything about the protocol.
package transport

import (
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// ToWire converts a protocol message into its wire form. The key and value
// bytes are shared with m, not copied.
func ToWire(m protocol.Message) *peerpb.Message {
	return &peerpb.Message{
		Kind:             uint32(m.Kind),
		From:             uint64(m.From),
		To:               uint64(m.To),
		Key:              []byte(m.Key),
		BallotCounter:    m.Ballot.Counter,
		BallotProposer:   uint64(m.Ballot.Proposer),
		NextCounter:      m.Next.Counter,
		NextProposer:     uint64(m.Next.Proposer),
		AcceptedCounter:  m.Accepted.Counter,
		AcceptedProposer: uint64(m.Accepted.Proposer),
		SeenCounter:      m.Seen.Counter,
		SeenProposer:     uint64(m.Seen.Proposer),
		Value:            m.State.Value,
		Version:          m.State.Version,
		Deleted:          m.State.Deleted,
		Age:              m.Age,
	}
}

// FromWire converts a wire message back. It reports false for a message of
// an unknown kind, which the receiver must drop.
func FromWire(w *peerpb.Message) (protocol.Message, bool) {
	k := protocol.Kind(w.GetKind())
	if k < protocol.MsgPrepare || k > protocol.MsgConflict {
		return protocol.Message{}, false
	}
	return protocol.Message{
		Kind:     k,
		From:     protocol.NodeID(w.GetFrom()),
		To:       protocol.NodeID(w.GetTo()),
		Key:      string(w.GetKey()),
		Ballot:   protocol.Ballot{Counter: w.GetBallotCounter(), Proposer: protocol.NodeID(w.GetBallotProposer())},
		Next:     protocol.Ballot{Counter: w.GetNextCounter(), Proposer: protocol.NodeID(w.GetNextProposer())},
		Accepted: protocol.Ballot{Counter: w.GetAcceptedCounter(), Proposer: protocol.NodeID(w.GetAcceptedProposer())},
		Seen:     protocol.Ballot{Counter: w.GetSeenCounter(), Proposer: protocol.NodeID(w.GetSeenProposer())},
		State:    protocol.State{Value: w.GetValue(), Version: w.GetVersion(), Deleted: w.GetDeleted()},
		Age:      w.GetAge(),
	}, true
}
