package transport

import (
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// errBadInput: a peer sent what no node of this release sends (a bug, a
// node of another release, or not a node at all). The receiver drops the
// connection and delivers nothing of the frame.
var errBadInput = errors.New("caspaxos/transport: bad input from a peer")

// check checks a whole frame from member sender, as client input is
// checked, before anything of it is delivered: message kinds, senders and
// addressees, ballot counters, versions and ages in range (protocol's
// MaxCounter, MaxVersion, MaxAge), keys and values within the node's
// Limits, forwards of a known operation and a deadline that is not
// negative.
func (t *Transport) check(sender protocol.NodeID, f *peerpb.Frame) error {
	for _, m := range f.GetMessages() {
		if err := t.checkMessage(sender, m); err != nil {
			return fmt.Errorf("%w: message of key %.64q: %w", errBadInput, m.GetKey(), err)
		}
	}
	for _, fw := range f.GetForwards() {
		if err := t.checkForward(fw); err != nil {
			return fmt.Errorf("%w: forward %d of key %.64q: %w", errBadInput, fw.GetId(), fw.GetKey(), err)
		}
	}
	for _, r := range f.GetForwardReplies() {
		if err := t.cfg.Limits.CheckValue(r.GetValue()); err != nil {
			return fmt.Errorf("%w: reply to forward %d: %w", errBadInput, r.GetId(), err)
		}
		if _, err := protocol.ValidateRequests(r.GetRequests()); err != nil {
			return fmt.Errorf("%w: reply to forward %d: %w", errBadInput, r.GetId(), err)
		}
	}
	return nil
}

func (t *Transport) checkMessage(sender protocol.NodeID, m *peerpb.Message) error {
	if !knownKind(m.GetKind()) {
		return fmt.Errorf("unknown kind %d", m.GetKind())
	}
	k := protocol.Kind(m.GetKind())
	switch {
	case protocol.NodeID(m.GetFrom()) != sender:
		return fmt.Errorf("%v from node %d on node %d's connection", k, m.GetFrom(), sender)
	case protocol.NodeID(m.GetTo()) != t.cfg.Self:
		return fmt.Errorf("%v addressed to node %d, not this node %d", k, m.GetTo(), t.cfg.Self)
	case len(m.GetKey()) > t.cfg.Limits.MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", kv.ErrKeyTooLarge, len(m.GetKey()), t.cfg.Limits.MaxKeyBytes)
	case max(m.GetBallotCounter(), m.GetNextCounter(), m.GetAcceptedCounter(), m.GetSeenCounter()) > protocol.MaxCounter:
		return fmt.Errorf("%v with a ballot counter past %d", k, protocol.MaxCounter)
	case m.GetVersion() > protocol.MaxVersion:
		return fmt.Errorf("%v with version %d, past %d", k, m.GetVersion(), protocol.MaxVersion)
	case m.GetAge() > protocol.MaxAge:
		return fmt.Errorf("%v with age %d, past %d", k, m.GetAge(), protocol.MaxAge)
	}
	if _, err := protocol.ValidateRequests(m.GetRequests()); err != nil {
		return err
	}
	return t.cfg.Limits.CheckValue(m.GetValue())
}

func (t *Transport) checkForward(fw *peerpb.Forward) error {
	if fw.GetTimeoutNanos() < 0 {
		return fmt.Errorf("negative timeout %d ns", fw.GetTimeoutNanos())
	}
	return forwardOp(fw).Validate(t.cfg.Limits) // a kind past 255 is kind 0: refused
}
