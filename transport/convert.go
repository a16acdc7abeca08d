// Package transport carries protocol messages and forwarded operations
// between caspaxos nodes, in frames over TCP (frames.go), with the admin and
// GC services on gRPC beside them on the same port. It only converts and
// carries: it never decides anything about the protocol.
package transport

import (
	"math"
	"unsafe"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// ToWire converts a protocol message into its wire form. The key and value
// bytes are shared with m, not copied: the result is for marshalling and
// must not be changed.
func ToWire(m protocol.Message) *peerpb.Message {
	w := new(peerpb.Message)
	toWire(w, m)
	return w
}

// toWire fills w, which must be zero, with m's wire form (see ToWire).
func toWire(w *peerpb.Message, m protocol.Message) {
	w.Kind = uint32(m.Kind)
	w.From = uint64(m.From)
	w.To = uint64(m.To)
	w.Key = unsafe.Slice(unsafe.StringData(m.Key), len(m.Key)) // read only, by Marshal
	w.BallotCounter = m.Ballot.Counter
	w.BallotProposer = uint64(m.Ballot.Proposer)
	w.NextCounter = m.Next.Counter
	w.NextProposer = uint64(m.Next.Proposer)
	w.AcceptedCounter = m.Accepted.Counter
	w.AcceptedProposer = uint64(m.Accepted.Proposer)
	w.SeenCounter = m.Seen.Counter
	w.SeenProposer = uint64(m.Seen.Proposer)
	w.Value = m.State.Value
	w.Version = m.State.Version
	w.Deleted = m.State.Deleted
	w.Requests = m.State.Requests
	w.Created = m.State.Created
	w.Lease, w.Flags, w.LockIndex = m.State.Lease, m.State.Flags, m.State.LockIndex
	w.Age = m.Age
}

// knownKind reports whether a wire message's kind is one of protocol's. It
// checks the wire's 32 bits before any narrowing to Kind's 8: kind 257 is
// unknown, not a Prepare.
func knownKind(k uint32) bool {
	return k >= uint32(protocol.MsgPrepare) && k <= uint32(protocol.MsgConflict)
}

// FromWire converts a wire message back. It reports false for a message of
// an unknown kind, which the receiver must drop.
func FromWire(w *peerpb.Message) (protocol.Message, bool) {
	if !knownKind(w.GetKind()) {
		return protocol.Message{}, false
	}
	k := protocol.Kind(w.GetKind())
	return protocol.Message{
		Kind:     k,
		From:     protocol.NodeID(w.GetFrom()),
		To:       protocol.NodeID(w.GetTo()),
		Key:      string(w.GetKey()),
		Ballot:   protocol.Ballot{Counter: w.GetBallotCounter(), Proposer: protocol.NodeID(w.GetBallotProposer())},
		Next:     protocol.Ballot{Counter: w.GetNextCounter(), Proposer: protocol.NodeID(w.GetNextProposer())},
		Accepted: protocol.Ballot{Counter: w.GetAcceptedCounter(), Proposer: protocol.NodeID(w.GetAcceptedProposer())},
		Seen:     protocol.Ballot{Counter: w.GetSeenCounter(), Proposer: protocol.NodeID(w.GetSeenProposer())},
		State: protocol.State{Value: w.GetValue(), Version: w.GetVersion(), Deleted: w.GetDeleted(), Requests: nilIfEmpty(w.GetRequests()), Created: w.GetCreated(),
			Attrs: protocol.Attrs{Lease: w.GetLease(), Flags: w.GetFlags(), LockIndex: w.GetLockIndex()}},
		Age: w.GetAge(),
	}, true
}

// forwardOp converts a forwarded operation. A kind past kv.OpKind's 8 bits
// becomes 0, which Validate refuses, rather than wrapping onto a known one.
func forwardOp(f *peerpb.Forward) kv.Op {
	var kind kv.OpKind
	if f.GetOp() <= math.MaxUint8 {
		kind = kv.OpKind(f.GetOp())
	}
	return kv.Op{Kind: kind, Key: string(f.GetKey()), Value: f.GetValue(), Version: f.GetVersion(), Delta: f.GetDelta(), RequestID: f.GetRequestId(),
		Lease: f.GetLease(), Flags: f.GetFlags()}
}

// nilIfEmpty: an empty request table is no table (protocol.State.Requests).
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
