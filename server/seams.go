package server

import (
	"context"
	"errors"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

var (
	// ErrStopped: the node (or the part of it asked) has stopped. A request
	// answered with it was not applied and never will be.
	ErrStopped = errors.New("caspaxos/server: node stopped")
	// ErrUnreachable: a node could not be reached, or could not take a
	// request. Nothing was delivered to it.
	ErrUnreachable = errors.New("caspaxos/server: node unreachable")
)

// Transport carries protocol messages between nodes. Messages for many keys
// travel together; every message of one Send is addressed to the same node.
//
// Delivery is best effort: a batch may be lost, duplicated, delayed or
// reordered, and the protocol tolerates all of it. Send must not wait for
// the receiver to process the batch (the in-process transport hands it to
// the receiving node, which queues it); it may block briefly for flow
// control. The transport owns msgs once Send is called, and State.Value
// slices in them are shared, never modified.
//
// Send returns an error wrapping ErrUnreachable when it knows the batch was
// not delivered; nil does not mean delivered.
type Transport interface {
	Send(to protocol.NodeID, msgs []protocol.Message) error
}

// Receiver is what a Transport delivers to: a Node.
type Receiver interface {
	// Deliver takes a batch of messages addressed to this node (requests
	// for its acceptor, replies for its proposer). It does not block on
	// their processing; it may drop them.
	Deliver(msgs []protocol.Message)
}

// Request is one operation on one key, as a node runs it.
type Request struct {
	// Op is the operation; Op.Key is the key. With Change nil, Op.Kind
	// says what to do (kv.OpGet is a read).
	Op kv.Op
	// Change, when not nil, is run instead of Op.Change(): a change function
	// of the embedding program (caspaxos.Store.Change), and Op.Kind is
	// ignored. A function cannot be encoded for a network, so a network
	// Forwarder answers ErrUnreachable for such requests and the node runs
	// them on its own proposer. Correctness never depends on where a request
	// runs; only the one-round-trip cache does (PROTOCOL.md §5).
	Change protocol.Change
}

// ChangeAt returns the change function a proposer proposes at nowMillis,
// the time it fixed before the change runs (kv.Op.ChangeAt): exactly-once
// for an operation with a request ID. Nil for a read.
func (r Request) ChangeAt(nowMillis int64, c kv.Idempotency) (protocol.Change, error) {
	if r.Change != nil {
		return r.Change, nil
	}
	return r.Op.ChangeAt(nowMillis, c)
}

// Forwarder hands a request to another node's proposer: the key's home
// (see Home). The in-process implementation (node.Local) is a direct call;
// the network one sends the operation to the peer.
type Forwarder interface {
	// Forward runs req on node to's proposer and returns what that node's
	// Propose returned. It returns an error wrapping ErrUnreachable or
	// ErrStopped when the node did not take the request; req was then not
	// applied and the caller may run it elsewhere.
	Forward(ctx context.Context, to protocol.NodeID, req Request) (protocol.State, error)
}

// Distancer is what a Forwarder may also report: the measured round-trip
// time to a node, false while none was measured. The network forwarder
// reports its transport's link probes; a Forwarder without it (the
// in-process one) counts every node as near. A node that failed (a probe
// got no answer, its link broke) and has not answered steadily since is
// reported kv.FailedRTT away.
type Distancer interface {
	RTT(id protocol.NodeID) (time.Duration, bool)
}
