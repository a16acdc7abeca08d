package sim

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

type opStatus uint8

const (
	opPending opStatus = iota + 1
	opDone             // answered with an outcome (a success or a refusal)
	opUnknown          // ErrUnknownOutcome, or never answered (its node crashed)
	opAborted          // ErrAborted: not applied; left out of the history
	// opIDSettled: answered for its request ID (a repeat of a write
	// already applied, or a refusal of the ID): it changed nothing, and is
	// left out of the history (idempotent.go).
	opIDSettled
)

// op is one client operation and what became of it.
type op struct {
	id        protocol.ReqID
	client    int
	node      int    // the node it was sent to ...
	inc       uint64 // ... in this incarnation
	in        input
	k         int // index of in.key
	call, ret time.Duration
	status    opStatus
	out       output
	lost      bool // never answered
	// computed: the proposer ran the change (at least once); sentMark is
	// its node's count of accepts sent for the key at that moment. A lost
	// operation whose node sent no accept for the key since cannot have
	// taken effect (unsent).
	computed bool
	sentMark uint64
	unsent   bool
	// An unknown outcome is closed at closeAt once it can no longer take
	// effect (see retirement); an open one may take effect at any time.
	closed  bool
	closeAt time.Duration
}

func (o *op) describe() string {
	switch o.status {
	case opPending:
		return "pending"
	case opAborted:
		return "aborted"
	case opIDSettled:
		return "settled by its request ID"
	case opUnknown:
		if o.unsent {
			return "never answered, never sent (not applied)"
		}
		if o.lost {
			return "never answered (unknown)"
		}
		return "unknown outcome"
	}
	return o.out.String()
}

// client issues one operation at a time.
type client struct {
	idx  int
	op   *op
	seen map[string]uint64 // per key, the last version this client saw (0: absent)
	// skew is how far the client's clock is off; retry (of key index
	// retryK) is a write with a request ID to send again (idempotent.go).
	skew   time.Duration
	retry  *input
	retryK int
}

func newClient(idx int) *client { return &client{idx: idx, seen: make(map[string]uint64)} }

// workload is the run's history and the bookkeeping that bounds it.
type workload struct {
	ops      []*op // in the order they were issued
	byReq    map[protocol.ReqID]*op
	inflight []int // per key index
	issued   int
	waiting  int // operations issued and not ended
	nextReq  protocol.ReqID
}

func newWorkload(p Plan) workload {
	return workload{byReq: make(map[protocol.ReqID]*op), inflight: make([]int, p.Keys)}
}

func (s *sim) finished() bool {
	return s.w.issued >= s.opts.Ops && s.w.waiting == 0 && s.lists.active == 0
}

func (s *sim) clientNext(c *client) {
	if s.w.issued >= s.opts.Ops || c.op != nil {
		return
	}
	if in, k, ok := s.takeRetry(c); ok {
		if n := s.route(k); n.up {
			s.issue(c, n, k, in)
			return
		}
		s.stats.Unavailable++
		c.retry, c.retryK = &in, k // try again next time
		s.schedule(event{kind: evClientNext, client: c.idx}, s.jitter(s.plan.Think))
		return
	}
	k, ok := s.pickKey()
	if !ok {
		s.schedule(event{kind: evClientNext, client: c.idx}, s.jitter(s.plan.Think))
		return
	}
	n := s.route(k)
	if !n.up {
		s.stats.Unavailable++
		s.schedule(event{kind: evClientNext, client: c.idx}, s.jitter(s.plan.Think))
		return
	}
	s.issue(c, n, k, s.withRequestID(c, s.pickInput(c, s.keys[k])))
}

// pickKey returns a random key with room for one more operation in flight.
func (s *sim) pickKey() (int, bool) {
	// The first Plan.Keys keys are the clients'; leases' come after.
	start := s.rng.IntN(s.plan.Keys)
	for i := range s.plan.Keys {
		k := (start + i) % s.plan.Keys
		if s.w.inflight[k] < s.plan.MaxInFlightPerKey {
			return k, true
		}
	}
	return 0, false
}

// route picks the node an operation on key k goes to: its home node (so
// that the one-round-trip path and composition happen) or any node.
// A node that has not joined yet is no one's node: a key homed on it goes
// to any node that has.
func (s *sim) route(k int) *node {
	if s.chance(s.plan.HomeBias) {
		if n := s.nodes[k%len(s.nodes)]; !n.fresh {
			s.stats.HomeRouted++
			return n
		}
	}
	s.stats.RandomRouted++
	return s.pickNode(func(n *node) bool { return !n.fresh })
}

func (s *sim) pickInput(c *client, key string) input {
	in := input{key: key}
	switch r := s.rng.IntN(100); {
	case r < 25:
		in.kind = opGet
	case r < 40:
		in.kind, in.value = opPut, s.newValue()
	case r < 50:
		in.kind, in.value = opCreate, s.newValue()
	case r < 70:
		in.kind, in.value, in.version = opCAS, s.newValue(), s.guessVersion(c, key)
	case r < 80:
		in.kind = opDelete
		if s.chance(0.5) {
			in.version = s.guessVersion(c, key)
		}
	default:
		in.kind, in.delta = opIncrement, int64(s.rng.IntN(9)-3)
	}
	return in
}

// guessVersion is the version this client last saw, now and then off by one.
func (s *sim) guessVersion(c *client, key string) uint64 {
	v := c.seen[key]
	switch r := s.rng.IntN(10); {
	case r == 0:
		return v + 1
	case r == 1 && v > 0:
		return v - 1
	}
	return v
}

// newValue returns a value no other operation writes (unique values keep
// Porcupine's search small); most are integers, so Increment can use them.
func (s *sim) newValue() string {
	if s.chance(0.05) {
		return "x" + strconv.Itoa(s.w.issued)
	}
	return strconv.Itoa(1000 * (s.w.issued + 1))
}

func (s *sim) issue(c *client, n *node, k int, in input) {
	s.w.nextReq++
	o := &op{id: s.w.nextReq, client: c.idx, node: n.idx, inc: n.inc, in: in, k: k, call: s.now, status: opPending}
	s.w.ops = append(s.w.ops, o)
	s.w.byReq[o.id] = o
	s.w.inflight[k]++
	s.w.issued++
	s.w.waiting++
	c.op = o
	n.pending[o.id] = in.key
	s.stats.Ops[in.kind]++
	if in.kind == opDelete && in.version != 0 {
		s.stats.VersionedDeletes++
	}
	s.noteOp("issues", o)
	switch {
	case in.kind == opGet && s.nodes[k%len(s.nodes)] != n:
		// Away from the key's home, as the server does: the fast path
		// only, then (on ErrSlowRead) a Read, here on the same node.
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.FastRead(o.id, in.key) })
	case in.kind == opGet:
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Read(o.id, in.key) })
	case in.rid != "" && (s.opts.Variant.IDCheckOutside || s.opts.Variant.IDTimeAtArrival):
		ch := s.counted(n, o, s.idChange(n, in, s.nodeMillis(n)))
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Propose(o.id, in.key, ch) })
	case in.rid != "":
		// As the server's proposer: the change is built at the time of
		// each attempt (protocol.Proposer.ProposeTimed).
		ch := func(nowMillis int64) protocol.Change { return s.counted(n, o, s.idChange(n, in, nowMillis)) }
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.ProposeTimed(o.id, in.key, ch) })
	default:
		ch := s.counted(n, o, in.change())
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Propose(o.id, in.key, ch) })
	}
	s.schedule(event{kind: evDeadline, client: c.idx, req: o.id}, s.plan.Deadline)
}

// counted wraps o's change so that the simulator sees how many changes one
// proposer call computes for a key (composition), and whether o's change
// ever ran.
func (s *sim) counted(n *node, o *op, ch protocol.Change) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		s.computing[o.in.key]++
		if !o.computed {
			o.computed, o.sentMark = true, n.acceptsSent[o.in.key]
		}
		return ch(cur)
	}
}

// deadline: the client gives up and the driver cancels the request.
func (s *sim) deadline(ev *event) {
	o := s.w.byReq[ev.req]
	if o.status != opPending {
		return
	}
	n := s.nodes[o.node]
	if !n.up || n.inc != o.inc {
		s.fail("sim: request %d is pending at node %d, which crashed", o.id, n.id)
		return
	}
	s.callProposer(n, causeCancel, func(p *protocol.Proposer) { p.Cancel(o.id) })
}

// clientResult hands a released Result to its client.
func (s *sim) clientResult(n *node, r protocol.Result) {
	o := s.w.byReq[r.ID]
	if o == nil || o.status != opPending {
		s.fail("sim: node %d answered request %d, which is not waiting", n.id, r.ID)
		return
	}
	if errors.Is(r.Err, protocol.ErrSlowRead) {
		s.stats.SlowFastReads++
		s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Read(o.id, o.in.key) })
		return
	}
	o.ret = s.now
	switch {
	case errors.Is(r.Err, protocol.ErrAborted):
		o.status = opAborted
		s.stats.Aborted++
	case errors.Is(r.Err, protocol.ErrUnknownOutcome):
		o.status = opUnknown
		s.stats.Unknown++
		s.ret.onUnknown(s, n, o)
		s.retryLater(o)
	case s.idAnswer(o, r.Err):
	default:
		if err := s.settleKnown(o, r); err != nil {
			s.fail("%v", err)
			return
		}
	}
	s.noteOp("answered", o)
	s.endOp(o)
}

func (s *sim) settleKnown(o *op, r protocol.Result) error {
	oc, ok := classify(r.Err)
	if !ok {
		return fmt.Errorf("request %d (%v) failed with an error no kv operation returns: %v", o.id, o.in, r.Err)
	}
	o.status = opDone
	o.out = output{outcome: oc, state: fromState(r.State)}
	if oc == outOK {
		s.stats.Succeeded++
	} else {
		s.stats.Refused++
	}
	s.clients[o.client].seen[o.in.key] = kv.CurrentVersion(r.State)
	return nil
}

func (s *sim) endOp(o *op) {
	s.w.inflight[o.k]--
	s.w.waiting--
	s.clients[o.client].op = nil
	s.schedule(event{kind: evClientNext, client: o.client}, s.jitter(s.plan.Think))
}

// loseOps ends the operations waiting at a node that crashed: they were
// never answered, and may or may not take effect.
func (s *sim) loseOps(n *node) {
	for _, c := range s.clients {
		o := c.op
		if o == nil || o.node != n.idx {
			continue
		}
		o.status, o.lost, o.ret = opUnknown, true, s.now
		s.stats.NeverAnswered++
		if !o.computed || n.acceptsSent[o.in.key] == o.sentMark {
			// No accept can carry its change: not applied, and never will be.
			o.unsent = true
			s.stats.LostUnsent++
		}
		s.ret.onLost(s, n, o)
		s.retryLater(o)
		s.noteOp("loses", o)
		s.endOp(o)
	}
}

// noteOp records something that happened to a client operation.
func (s *sim) noteOp(what string, o *op) {
	s.trace.noteOp(s.now, what, o)
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "%12v  client %d %s: req %d %v at node %d -> %s\n", s.now, o.client, what, o.id, o.in, o.node+1, o.describe())
	}
}
