package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// codeNotSent marks a forward that was dropped before it left this node,
// or that the peer did not take: in both cases it did not run.
const codeNotSent = "caspaxos_not_sent"

// Forward runs op on node to's proposer (the key's home) and returns what
// it returned there. Errors:
//   - ErrUnreachable: the forward provably never left (the link is down, or
//     broke before sending it); the caller may run op elsewhere.
//   - kv.ErrUnknownOutcome: a change was sent and no answer came (deadline,
//     or the peer went silent); it may or may not take effect.
//   - kv.ErrNoQuorum: a read got no answer in time.
//   - the errors of package kv that the peer answered with.
func (t *Transport) Forward(ctx context.Context, to protocol.NodeID, op kv.Op) (protocol.State, error) {
	l := t.set().links[to]
	if l == nil {
		return protocol.State{}, fmt.Errorf("%w: node %d is not a peer", ErrUnreachable, to)
	}
	t.awaitFirstContact(ctx, l)
	if !t.Reachable(to) {
		return protocol.State{}, fmt.Errorf("%w: node %d", ErrUnreachable, to)
	}
	id := t.nextID.Add(1)
	ch := make(chan *peerpb.ForwardReply, 1)
	t.mu.Lock()
	t.pending[id] = pendingForward{peer: to, ch: ch}
	t.mu.Unlock()
	defer t.forget(id)
	f := &peerpb.Forward{Id: id, Op: uint32(op.Kind), Key: []byte(op.Key), Value: op.Value, Version: op.Version, Delta: op.Delta, RequestId: op.RequestID,
		Lease: op.Lease, Flags: op.Flags}
	if d, ok := ctx.Deadline(); ok {
		f.TimeoutNanos = max(1, int64(time.Until(d)))
	}
	if err := l.enqueue(func(b *frameBuf) { b.addForward(f) }, 1, forwardBytes(f)); err != nil {
		return protocol.State{}, err
	}
	return t.await(ctx, to, op, ch)
}

// awaitFirstContact waits, within ctx and the first StartupGrace of this
// transport's life, for a link that has never been up and for its first
// heartbeat. Right after a cluster starts, a peer that is merely not
// connected yet would otherwise look unreachable, and this node would
// propose the keys homed there itself, competing with their home proposer.
// A peer dead from the start costs only the forwards of that first window.
func (t *Transport) awaitFirstContact(ctx context.Context, l *link) {
	left := t.cfg.StartupGrace - t.now().Sub(t.started)
	if left <= 0 {
		return
	}
	select {
	case <-l.firstUp:
		return // it was up once: from now on, silence means what it says
	default:
	}
	grace := time.NewTimer(left)
	defer grace.Stop()
	select {
	case <-l.firstUp:
	case <-grace.C:
		return
	case <-ctx.Done():
		return
	}
	check := time.NewTicker(t.cfg.Heartbeat / 5)
	defer check.Stop()
	for t.silent(l.id) {
		select {
		case <-check.C:
		case <-grace.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// await waits for the reply, the deadline, or the peer going silent.
func (t *Transport) await(ctx context.Context, to protocol.NodeID, op kv.Op, ch chan *peerpb.ForwardReply) (protocol.State, error) {
	check := time.NewTicker(t.cfg.Heartbeat)
	defer check.Stop()
	for {
		select {
		case r := <-ch:
			return decodeReply(r, to)
		case <-ctx.Done():
			return protocol.State{}, noAnswer(op, fmt.Errorf("forward to node %d: %w", to, ctx.Err()))
		case <-t.ctx.Done():
			return protocol.State{}, noAnswer(op, ErrClosed)
		case <-check.C:
			// A peer that is leaving still answers the forwards it has;
			// only silence means no answer will come.
			if t.silent(to) {
				return protocol.State{}, noAnswer(op, fmt.Errorf("node %d went silent", to))
			}
		}
	}
}

// noAnswer is the outcome of a sent forward that got no reply.
func noAnswer(op kv.Op, cause error) error {
	if op.Kind == kv.OpGet {
		return fmt.Errorf("%w: %v", kv.ErrNoQuorum, cause)
	}
	return fmt.Errorf("%w: %v", kv.ErrUnknownOutcome, cause)
}

func decodeReply(r *peerpb.ForwardReply, to protocol.NodeID) (protocol.State, error) {
	switch r.GetErrorCode() {
	case "":
		return protocol.State{Value: r.GetValue(), Version: r.GetVersion(), Deleted: r.GetDeleted(), Requests: nilIfEmpty(r.GetRequests()), Created: r.GetCreated(),
			Attrs: protocol.Attrs{Lease: r.GetLease(), Flags: r.GetFlags(), LockIndex: r.GetLockIndex()}}, nil
	case codeNotSent:
		return protocol.State{}, fmt.Errorf("%w: node %d: link broke before the forward left", ErrUnreachable, to)
	}
	return protocol.State{}, kv.FromCode(r.GetErrorCode(), r.GetErrorMessage(), r.GetCurrentVersion(), r.GetExpectedVersion())
}

func (t *Transport) forget(id uint64) {
	t.mu.Lock()
	delete(t.pending, id)
	t.mu.Unlock()
}

// pendingForward is a forward waiting for its reply from peer.
type pendingForward struct {
	peer protocol.NodeID
	ch   chan *peerpb.ForwardReply
}

// resolve hands a reply from peer to the forward waiting for it, if any
// still is. A reply from another peer than the forward went to is ignored.
func (t *Transport) resolve(from protocol.NodeID, r *peerpb.ForwardReply) {
	t.mu.Lock()
	p, ok := t.pending[r.GetId()]
	if ok && p.peer == from {
		delete(t.pending, r.GetId())
	}
	t.mu.Unlock()
	if ok && p.peer == from {
		p.ch <- r
	}
}

func (t *Transport) receive(from protocol.NodeID, f *peerpb.Frame) {
	if len(f.GetMessages()) > 0 {
		msgs := make([]protocol.Message, 0, len(f.GetMessages()))
		for _, w := range f.GetMessages() {
			if m, ok := FromWire(w); ok { // checked: always
				msgs = append(msgs, m)
			}
		}
		t.h.Deliver(msgs)
	}
	for _, fw := range f.GetForwards() {
		select {
		case t.serving <- struct{}{}:
			go t.serveForward(from, fw)
		default:
			t.reply(from, &peerpb.ForwardReply{Id: fw.GetId(), ErrorCode: codeNotSent})
		}
	}
	for _, r := range f.GetForwardReplies() {
		t.resolve(from, r)
	}
}

// serveForward runs a peer's forwarded operation here and sends the reply
// back on this node's own link to that peer.
func (t *Transport) serveForward(from protocol.NodeID, f *peerpb.Forward) {
	defer func() { <-t.serving }()
	// A forward runs at most MaxForwardTimeout, whatever it asked for (0:
	// no deadline of the caller's; check refused a negative one).
	d := time.Duration(f.GetTimeoutNanos())
	if d <= 0 || d > t.cfg.MaxForwardTimeout {
		d = t.cfg.MaxForwardTimeout
	}
	ctx, cancel := context.WithTimeout(t.ctx, d)
	defer cancel()
	op := forwardOp(f)
	r := &peerpb.ForwardReply{Id: f.GetId()}
	s, err := t.h.Serve(ctx, op)
	switch {
	case errors.Is(err, ErrNotTaken):
		r.ErrorCode = codeNotSent
	case err != nil:
		r.ErrorCode, r.CurrentVersion = kv.Code(err)
		r.ErrorMessage = err.Error()
		var vm *kv.VersionMismatchError
		if errors.As(err, &vm) {
			r.ExpectedVersion = vm.Expected
		}
	default:
		r.Value, r.Version, r.Deleted, r.Created = s.Value, s.Version, s.Deleted, s.Created
		r.Lease, r.Flags, r.LockIndex = s.Lease, s.Flags, s.LockIndex
		if op.Kind == kv.OpOutcome {
			// Only an outcome query's answer is read from the register's
			// request table (kv.RequestOutcome). Any other reply leaves it
			// out: on a hot key written with request IDs the table is tens
			// of kilobytes, and each forwarded write would carry it back.
			r.Requests = s.Requests
		}
	}
	t.reply(from, r)
}

// reply sends r to peer. A lost reply leaves the caller with an unknown
// outcome, as any lost message would.
func (t *Transport) reply(to protocol.NodeID, r *peerpb.ForwardReply) {
	if l := t.set().links[to]; l != nil {
		_ = l.enqueue(func(b *frameBuf) { b.addReply(r) }, 1, replyBytes(r))
	}
}
