package sim

import (
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// localDelay is how long a message from a node to itself takes (its
// proposer talking to its own acceptor). Local messages are never lost,
// duplicated or partitioned.
const localDelay = 10 * time.Microsecond

// send puts m on the network from node index from. Between nodes a message
// may be lost, duplicated, delayed and reordered, and is dropped if a
// partition blocks its link when it is sent or when it arrives.
func (s *sim) send(from int, m protocol.Message) {
	to := int(m.To) - 1
	s.transmit(from, to, event{kind: evDeliver, node: to, msg: m})
}

// transmit schedules ev, a message from node index from to node index to,
// with the network's faults: send's, for protocol messages and listing
// scans alike.
func (s *sim) transmit(from, to int, ev event) {
	if from == to {
		s.schedule(ev, localDelay)
		return
	}
	if s.blocked[from][to] {
		s.stats.Partitioned++
		return
	}
	if s.chance(s.plan.Loss) {
		s.stats.Lost++
		return
	}
	s.schedule(ev, s.netDelay(from, to))
	if s.chance(s.plan.Dup) {
		s.stats.Duplicated++
		s.schedule(ev, s.netDelay(from, to))
	}
}

// netDelay draws a message's latency: jittered, slower if either end is
// slow, and now and then much longer (which reorders messages).
func (s *sim) netDelay(from, to int) time.Duration {
	slow := time.Duration(max(s.nodes[from].slowNet, s.nodes[to].slowNet))
	d := s.jitter(s.plan.NetLatency * slow)
	if s.chance(s.plan.Reorder) {
		s.stats.Reordered++
		d += time.Duration(s.rng.Int64N(int64(s.plan.ReorderDelay) + 1))
	}
	return d
}

// deliver hands m to its node: a request to the acceptor, a reply to the
// proposer. A node that is down, or cut off from the sender, drops it.
func (s *sim) deliver(m protocol.Message) {
	from, to := int(m.From)-1, int(m.To)-1
	n := s.nodes[to]
	if !n.up {
		return
	}
	if s.blocked[from][to] {
		s.stats.Partitioned++
		return
	}
	if m.Kind.IsRequest() {
		s.acceptorStep(n, m)
		return
	}
	cause := causeReply
	if m.Kind == protocol.MsgReadReply {
		cause = causeReadReply
	}
	s.callProposer(n, cause, func(p *protocol.Proposer) { p.Step(m) })
}
