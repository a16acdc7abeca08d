package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Exactly-once writes in the simulator (COORDINATION.md, "Exactly-once
// writes"; kv.Idempotent, protocol.RequestCheck).
//
// In about half the plans a share of the writes (puts, increments,
// deletes of any version) carry a request ID, stamped with the issuing
// client's clock. Every node and client has a clock of its own, off the
// virtual time by up to half the plan's skew bound, and a proposer fixes
// its node's time before the change runs, as server/proposer does. A
// write with an ID that ends with an unknown outcome, or is never
// answered because its node crashed, is sent again by its client with
// the same ID and issue time, to any node, up to maxIDAttempts attempts
// and while it is younger than the window, as the Go client does.
//
// In the history, each attempt is an operation of its own: an attempt
// answered with its request's first outcome (a repeat) or refused for
// its ID (expired, from the future) changed nothing and is left out, like
// an aborted one. An attempt that applied the write is an ordinary
// operation; the attempts before it stay unknown. Porcupine alone would
// accept a write applied by two attempts (an unknown one may have taken
// effect), so the exactly-once check is its own: every state chosen on a
// key shows the request IDs applied to it with the version each gave it,
// and an ID seen at two versions of a key, ever (GC and re-creation
// included), was applied twice (checkRequests).
//
// Deletion GC keeps a tombstone whose table may still be retried against
// (protocol.RequestsHeld), decided at its coordinator's clock after step 1.
//
// Variant IDCheckOutside checks the ID outside the change: against the
// table of the issuing node's own acceptor, at issue time, and then
// proposes a change that applies the write and records it unconditionally.

const (
	// simEpochMillis is the clocks' reading at virtual time 0.
	simEpochMillis = 1_700_000_000_000
	// maxIDAttempts bounds the attempts of one write with a request ID.
	maxIDAttempts = 4
)

// drawIdempotency draws the plan's exactly-once workload from a stream of
// its own, so that plans without it are the ones the seed always named.
func drawIdempotency(seed uint64, p *Plan) {
	rng := rand.New(rand.NewPCG(seed, seed^0x1de5_70a1_c0de_0001))
	if rng.IntN(2) == 0 {
		return
	}
	p.Idempotent = 0.3 + 0.5*rng.Float64()
	p.IDWindow = between(rng, 50*time.Millisecond, time.Second)
	p.MaxSkew = between(rng, 0, p.IDWindow/5)
	p.ClockSeed = rng.Uint64()
}

// setClocks gives every node and client its clock's offset, within half
// the skew bound either way, from the plan's clock seed.
func (s *sim) setClocks() {
	if s.plan.Idempotent == 0 && s.plan.Leases == 0 {
		return
	}
	s.idrng = rand.New(rand.NewPCG(s.plan.ClockSeed, 7))
	off := func() time.Duration {
		half := s.plan.MaxSkew / 2
		return between(s.idrng, -half, half)
	}
	for _, n := range s.nodes {
		n.skew = off()
	}
	for _, c := range s.clients {
		c.skew = off()
	}
	s.ledger = make(map[string]map[string]uint64)
}

// nodeMillis is n's clock; clientMillis a client's.
func (s *sim) nodeMillis(n *node) int64 { return simEpochMillis + (s.now + n.skew).Milliseconds() }
func (s *sim) clientMillis(c *client) int64 {
	return simEpochMillis + (s.now + c.skew).Milliseconds()
}

func (s *sim) requestWindow() protocol.RequestWindow {
	return protocol.RequestWindow{WindowMillis: s.plan.IDWindow.Milliseconds(), SkewMillis: s.plan.MaxSkew.Milliseconds()}
}

// withRequestID gives in a request ID now and then (Plan.Idempotent).
func (s *sim) withRequestID(c *client, in input) input {
	if s.plan.Idempotent == 0 || !(in.kind == opPut || in.kind == opIncrement || (in.kind == opDelete && in.version == 0)) {
		return in
	}
	if s.idrng.Float64() >= s.plan.Idempotent {
		return in
	}
	s.nextRID++
	in.rid, in.issued, in.attempt = fmt.Sprintf("rid-%d", s.nextRID), s.clientMillis(c), 1
	s.stats.IDWrites++
	return in
}

// kvOp is in as kv's operation.
func (in input) kvOp() kv.Op {
	kinds := map[opKind]kv.OpKind{opPut: kv.OpPut, opCreate: kv.OpCreate, opCAS: kv.OpCompareAndSwap, opDelete: kv.OpDelete, opIncrement: kv.OpIncrement}
	return kv.Op{Kind: kinds[in.kind], Key: in.key, Value: []byte(in.value), Version: in.version, Delta: in.delta}
}

// idChange is the change a proposer on n runs for in, which has a request
// ID: kv.Idempotent at nowMillis, n's time when the attempt computes it
// (the broken variant checks outside the change, at no time).
func (s *sim) idChange(n *node, in input, nowMillis int64) protocol.Change {
	req := kv.Request{ID: in.rid, IssuedMillis: in.issued}
	if s.opts.Variant.IDCheckOutside {
		return s.outsideCheck(n, in, req)
	}
	return kv.Idempotent(in.kvOp(), req, nowMillis, s.requestWindow())
}

// outsideCheck is the broken variant: the ID is checked against the table
// of n's own acceptor as it is now, outside the consensus round, and the
// change then applies the write and records it whatever the register it
// runs on holds.
func (s *sim) outsideCheck(n *node, in input, req kv.Request) protocol.Change {
	local, _ := protocol.DecodeRequests(n.disk.get(in.key).State.Requests)
	rec, seen := local.Find(req.ID)
	inner := in.change()
	return func(cur protocol.State) (protocol.Write, error) {
		if seen {
			return protocol.Write{}, &kv.DuplicateRequestError{Record: rec, State: protocol.State{Version: rec.Version}}
		}
		w, err := inner(cur)
		if err != nil || w.Kind == protocol.WriteKeep {
			return w, err
		}
		t, err := protocol.DecodeRequests(cur.Requests)
		if err != nil {
			return protocol.Write{}, err
		}
		kept := protocol.RequestTable{Horizon: t.Horizon}
		for _, r := range t.Records {
			if r.ID != req.ID {
				kept.Records = append(kept.Records, r)
			}
		}
		w.Table = &kept
		w.Record = protocol.RequestRecord{ID: req.ID, Outcome: protocol.RequestApplied, IssuedMillis: req.IssuedMillis}
		return w, nil
	}
}

// idAnswer settles an attempt answered for its request ID: a repeat of a
// write already applied, or a refusal of the ID. Both changed nothing.
func (s *sim) idAnswer(o *op, err error) bool {
	if o.in.rid == "" {
		return false
	}
	if _, ok := kv.Outcome(err); ok {
		o.status = opIDSettled
		s.stats.IDRepeats++
		return true
	}
	if errors.Is(err, kv.ErrRequestExpired) || errors.Is(err, kv.ErrRequestFromFuture) || errors.Is(err, kv.ErrRequestNotApplied) {
		o.status = opIDSettled
		s.stats.IDRefused++
		return true
	}
	return false
}

// retryLater makes o's client send o's write again, with its request ID,
// as its next operation (o ended with an unknown outcome).
func (s *sim) retryLater(o *op) {
	if o.in.rid == "" || o.in.attempt >= maxIDAttempts {
		return
	}
	c := s.clients[o.client]
	in := o.in
	in.attempt++
	c.retry, c.retryK = &in, o.k
}

// takeRetry returns the client's pending retry, if it is still young
// enough to send.
func (s *sim) takeRetry(c *client) (input, int, bool) {
	if c.retry == nil {
		return input{}, 0, false
	}
	in, k := *c.retry, c.retryK
	c.retry = nil
	if s.clientMillis(c)-in.issued >= s.plan.IDWindow.Milliseconds() {
		return input{}, 0, false
	}
	s.stats.IDRetries++
	return in, k, true
}

// checkRequests is the exactly-once check, on a state chosen on key: no
// request ID was ever applied to key at two versions.
func (s *sim) checkRequests(key string, st protocol.State) {
	if len(st.Requests) == 0 {
		return
	}
	t, err := protocol.DecodeRequests(st.Requests)
	if err != nil {
		s.fail("exactly-once: the request table chosen on %q does not decode: %v", key, err)
		return
	}
	if s.ledger == nil {
		s.ledger = make(map[string]map[string]uint64)
	}
	seen := s.ledger[key]
	if seen == nil {
		seen = make(map[string]uint64)
		s.ledger[key] = seen
	}
	for _, r := range t.Records {
		if r.Outcome != protocol.RequestApplied {
			continue
		}
		if v, ok := seen[r.ID]; ok && v != r.Version {
			s.fail("exactly-once: request %s was applied twice on %q: at version %d and at version %d", r.ID, key, v, r.Version)
			return
		}
		seen[r.ID] = r.Version
	}
}
