package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/watch"
	"github.com/caspaxos/caspaxos/storage"
)

// network is the faulty in-process network between the cluster's nodes.
// Each message of a batch is dropped, sent twice, or held back for a while
// (a timer delivers it later, so it overtakes nothing and is overtaken),
// with the plan's rates; links listed as cut drop everything, and
// forwards over them fail with server.ErrUnreachable. A node that is down
// neither sends nor receives.
//
// Every accept that leaves a node is recorded for invariant 1 (one value
// per ballot), before any fault touches it.
type network struct {
	plan Plan
	inv  *invariants

	mu    sync.Mutex
	rng   *rand.Rand // the per-message decisions; see doc.go on replay
	cut   map[[2]protocol.NodeID]bool
	nodes map[protocol.NodeID]*incarnation // the running one of each node
	// recent holds the last recentRequests prepares and accepts sent to
	// each node, oldest first: what replayTo delivers again after its
	// restart (Plan.Replay).
	recent map[protocol.NodeID][]protocol.Message

	held sync.WaitGroup // delayed deliveries not yet made
	stop atomic.Bool    // set at the end: delayed messages are dropped

	dropped, duplicated, delayed, sent, cutDrops, replayed atomic.Uint64
}

// recentRequests is how many of the requests sent to a node replayTo
// considers: about what reaches a busy node in the last milliseconds
// before a crash, whose promises are the likeliest not to be synced yet.
const recentRequests = 64

// incarnation is one run of a node, from its start to its crash or stop.
// Its endpoint stops carrying anything the moment it is cut off, before
// its disk is cloned, so that nothing it does afterwards reaches anyone.
type incarnation struct {
	id     protocol.NodeID
	net    *network
	node   *node.Node
	store  *storage.Pebble
	keeper *membership.Keeper
	gc     *gc.Runner
	lister *list.Lister
	// hints, hub: the watch's acceptor and node sides (watch.go); hubStart
	// when the hub started; watchWG its watchers.
	hints    *watch.Publisher
	hub      *watch.Hub
	hubStart int64
	watchWG  sync.WaitGroup
	alive    atomic.Bool
	// links is the set of peers its Keeper gave it (membership.Links):
	// what the node dials and accepts, as the peer transport does (it
	// drops the links of nodes the membership no longer lists). Empty
	// while the node knows nobody (a joining node): it accepts anyone.
	links atomic.Pointer[map[protocol.NodeID]bool]

	// revealed is the highest accepted ballot of each key that any reply
	// of this incarnation's acceptor showed, and promised the highest
	// ballot it promised (a promise's, or an accept's it acknowledged);
	// promisedBefore is what the node's earlier incarnations promised
	// (invariant 3). promisedBefore is not written while inc runs.
	mu             sync.Mutex
	revealed       map[string]protocol.Ballot
	promised       map[string]protocol.Ballot
	promisedBefore map[string]protocol.Ballot
}

// reveal records the accepted ballots msgs show (an Accepted reply its
// accept's ballot, every other reply its Accepted field, but a floor
// refusal's) and the ballots they promise, and checks that none breaks a
// promise an earlier incarnation of the node gave.
func (inc *incarnation) reveal(msgs []protocol.Message) {
	inc.mu.Lock()
	defer inc.mu.Unlock()
	for _, m := range msgs {
		b := m.Accepted
		switch m.Kind {
		case protocol.MsgAccepted:
			b = m.Ballot
			inc.promise(m)
		case protocol.MsgPromise:
			inc.promise(m)
		case protocol.MsgConflict:
			if b.Proposer == 0 && !b.IsZero() {
				// A floor's refusal (protocol.BelowFloor, PROTOCOL.md
				// §12) shows the floor as Accepted, a ballot no proposer
				// made: nothing accepted, and nothing promised.
				continue
			}
		case protocol.MsgReadReply:
		default:
			continue
		}
		if inc.revealed[m.Key].Less(b) {
			inc.revealed[m.Key] = b
		}
	}
}

// promise records the ballot a promise or an accepted reply m promises,
// and checks it against the node's earlier incarnations: a promise of B
// means never again promising a ballot <= B on the key, nor accepting one
// < B, crash or not (the floor keeps what the crash took). Only a key's
// deletion GC on this node starts the key afresh. Called under inc.mu.
//
// Only earlier incarnations are compared: within one, the replies of two
// batches may leave in either order, whatever order they were stepped in.
func (inc *incarnation) promise(m protocol.Message) {
	if before, ok := inc.promisedBefore[m.Key]; ok {
		broken := m.Ballot.Compare(before) < 0 || (m.Kind == protocol.MsgPromise && m.Ballot == before)
		if broken && !inc.net.inv.collectedAt(inc.id, m.Key) {
			inc.net.inv.breach("invariant 3: node %d promised key %q ballot %s before a crash, and after it answered %v",
				inc.id, m.Key, before, m)
		}
	}
	if inc.promised[m.Key].Less(m.Ballot) {
		inc.promised[m.Key] = m.Ballot
	}
}

func newNetwork(p Plan, seed uint64, inv *invariants) *network {
	return &network{
		plan:   p,
		inv:    inv,
		rng:    rand.New(rand.NewPCG(seed, 0x6e6574)), // "net"
		cut:    make(map[[2]protocol.NodeID]bool),
		nodes:  make(map[protocol.NodeID]*incarnation),
		recent: make(map[protocol.NodeID][]protocol.Message),
	}
}

// attach makes inc the running incarnation of its node.
func (n *network) attach(inc *incarnation) {
	n.mu.Lock()
	n.nodes[inc.id] = inc
	n.mu.Unlock()
	inc.alive.Store(true)
}

// detach cuts inc off: from now on it sends and receives nothing.
func (n *network) detach(inc *incarnation) {
	inc.alive.Store(false)
	n.mu.Lock()
	if n.nodes[inc.id] == inc {
		delete(n.nodes, inc.id)
	}
	n.mu.Unlock()
}

func (n *network) setCut(links [][2]protocol.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	for _, l := range links {
		n.cut[l] = true
	}
}

// route returns the incarnation a message from one node to another
// reaches, or nil if the link is cut, the receiver is down, or the
// receiver's links leave the sender out (checked at delivery, so that a
// delayed message from a node removed meanwhile is dropped, as the closed
// connection that carried it would drop it).
func (n *network) route(from, to protocol.NodeID) *incarnation {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[[2]protocol.NodeID{from, to}] {
		return nil
	}
	dst := n.nodes[to]
	if dst == nil || from == to || dst.linked(from) {
		return dst
	}
	return nil
}

// linked reports whether inc's links take id (all do while it knows nobody).
func (inc *incarnation) linked(id protocol.NodeID) bool {
	l := inc.links.Load()
	return l == nil || len(*l) == 0 || (*l)[id]
}

// SetPeers implements membership.Links: the harness's routing follows
// the node's membership.
func (inc *incarnation) SetPeers(peers, _ map[protocol.NodeID]string) {
	l := make(map[protocol.NodeID]bool, len(peers))
	for id := range peers {
		l[id] = true
	}
	inc.links.Store(&l)
}

// call returns the incarnation a call of inc to node to (a forward, a GC
// call) reaches: inc must be up and link to it, and route must take it.
func (n *network) call(inc *incarnation, to protocol.NodeID) (*incarnation, error) {
	if !inc.alive.Load() {
		return nil, fmt.Errorf("%w: node %d is down", server.ErrUnreachable, inc.id)
	}
	if to != inc.id && !inc.linked(to) {
		return nil, fmt.Errorf("%w: node %d has no link to %d", server.ErrUnreachable, inc.id, to)
	}
	if dst := n.route(inc.id, to); dst != nil {
		return dst, nil
	}
	return nil, fmt.Errorf("%w: %d->%d is cut or down", server.ErrUnreachable, inc.id, to)
}

// fate is what happens to one message.
type fate struct {
	copies int           // 0: dropped
	delay  time.Duration // 0: now
}

func (n *network) fates(to protocol.NodeID, msgs []protocol.Message) []fate {
	n.mu.Lock()
	defer n.mu.Unlock()
	fs := make([]fate, len(msgs))
	for i, m := range msgs {
		if m.Kind == protocol.MsgPrepare || m.Kind == protocol.MsgAccept {
			r := append(n.recent[to], m)
			n.recent[to] = r[max(0, len(r)-recentRequests):]
		}
		f := fate{copies: 1}
		if n.rng.Float64() < n.plan.Loss {
			f.copies = 0
		} else if n.rng.Float64() < n.plan.Dup {
			f.copies = 2
		}
		if n.rng.Float64() < n.plan.Delay {
			f.delay = time.Duration(1 + n.rng.Int64N(int64(n.plan.MaxDelay)))
			if n.rng.Float64() < n.plan.Late && (!n.plan.LateAcceptsOnly || msgs[i].Kind == protocol.MsgAccept) {
				f.delay += time.Duration(1 + n.rng.Int64N(int64(n.plan.LateDelay))) // may outlive a GC round, as the age fence must cope with
			}
		}
		fs[i] = f
	}
	return fs
}

// callFaults draws whether an in-process call (the controller's) is lost
// before it runs or after (its reply), each with the plan's loss rate.
func (n *network) callFaults() (before, after bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64() < n.plan.Loss, n.rng.Float64() < n.plan.Loss
}

// callDelay draws how long one leg of an in-process call (a listing's
// scan, there or back) is held up: none, or up to MaxDelay at the plan's
// delay rate.
func (n *network) callDelay() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rng.Float64() < n.plan.Delay {
		return time.Duration(1 + n.rng.Int64N(int64(n.plan.MaxDelay)))
	}
	return 0
}

// send carries msgs from inc's node to node to.
func (n *network) send(inc *incarnation, to protocol.NodeID, msgs []protocol.Message) error {
	if !inc.alive.Load() {
		return nil // a crashed node's last words are lost
	}
	n.inv.sent(msgs)
	inc.reveal(msgs)
	dst := n.route(inc.id, to)
	if dst != nil && to != inc.id && !inc.linked(to) {
		// Requests go over the node's own links, which leave to out;
		// replies go back the way their requests came.
		var replies []protocol.Message
		for _, m := range msgs {
			if !m.Kind.IsRequest() {
				replies = append(replies, m)
			}
		}
		n.cutDrops.Add(uint64(len(msgs) - len(replies)))
		if msgs = replies; len(msgs) == 0 {
			return fmt.Errorf("%w: node %d has no link to %d", server.ErrUnreachable, inc.id, to)
		}
	}
	if dst == nil {
		n.cutDrops.Add(uint64(len(msgs)))
		return fmt.Errorf("%w: %d->%d is cut or down", server.ErrUnreachable, inc.id, to)
	}
	var now []protocol.Message
	for i, f := range n.fates(to, msgs) {
		switch {
		case f.copies == 0:
			n.dropped.Add(1)
			continue
		case f.copies == 2:
			n.duplicated.Add(1)
		}
		n.sent.Add(uint64(f.copies))
		for range f.copies {
			if f.delay == 0 {
				now = append(now, msgs[i])
				continue
			}
			n.delayed.Add(1)
			n.later(inc.id, to, msgs[i], f.delay)
		}
	}
	if len(now) > 0 {
		dst.node.Deliver(now)
	}
	return nil
}

// later delivers m after d, to whichever incarnation of to runs then.
func (n *network) later(from, to protocol.NodeID, m protocol.Message, d time.Duration) {
	n.held.Add(1)
	time.AfterFunc(d, func() {
		defer n.held.Done()
		if n.stop.Load() {
			return
		}
		if dst := n.route(from, to); dst != nil {
			dst.node.Deliver([]protocol.Message{m})
		}
	})
}

// replayTo delivers again, to node id just restarted, each of the last
// requests sent to it before its crash, with the plan's chance, after a
// delay of up to MaxDelay: copies the network held across the crash.
func (n *network) replayTo(id protocol.NodeID) {
	n.mu.Lock()
	type copyOf struct {
		m protocol.Message
		d time.Duration
	}
	var out []copyOf
	for _, m := range n.recent[id] {
		if n.rng.Float64() < n.plan.Replay {
			out = append(out, copyOf{m, time.Duration(1 + n.rng.Int64N(int64(n.plan.MaxDelay)))})
		}
	}
	n.recent[id] = nil
	n.mu.Unlock()
	for _, c := range out {
		n.replayed.Add(1)
		n.later(c.m.From, id, c.m, c.d)
	}
}

// forward runs req on node to's proposer, if the link and the node are up.
func (n *network) forward(ctx context.Context, inc *incarnation, to protocol.NodeID, req server.Request) (protocol.State, error) {
	dst, err := n.call(inc, to)
	if err != nil {
		return protocol.State{}, err
	}
	return dst.node.Propose(ctx, req)
}

// shutdown drops every message still held and waits for their timers.
func (n *network) shutdown() {
	n.stop.Store(true)
	n.held.Wait()
}

// Send implements server.Transport for the incarnation's node.
func (inc *incarnation) Send(to protocol.NodeID, msgs []protocol.Message) error {
	return inc.net.send(inc, to, msgs)
}

// Forward implements server.Forwarder for the incarnation's node.
func (inc *incarnation) Forward(ctx context.Context, to protocol.NodeID, req server.Request) (protocol.State, error) {
	return inc.net.forward(ctx, inc, to, req)
}

var (
	_ server.Transport = (*incarnation)(nil)
	_ server.Forwarder = (*incarnation)(nil)
	_ membership.Links = (*incarnation)(nil)
)
