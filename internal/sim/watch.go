package sim

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/caspaxos/caspaxos/protocol"
)

// Watching (issue 21; COORDINATION.md, Watch; server/watch). In a quarter of
// the runs (Plan.Watchers > 0) simulated watchers, on keys and on
// prefixes, run on simulated nodes the way server/watch's Hub runs them:
//
//   - Every acceptor keeps subscriptions (server/watch's Publisher): a
//     watching node opens one hint stream to each member of its
//     configuration's accept set, naming its interest; once an accept of a
//     key in that interest is synced, the acceptor sends the accepted state
//     as a hint. Streams, their opening and their hints travel over the
//     simulated network (loss, delay, partitions, slow nodes). A stream
//     message the network drops, or an acceptor that crashes, breaks the
//     stream; its node learns it after watchStreamTimeout (a heartbeat
//     missed) and opens it again.
//   - The node's hub decides with the core's rules, never a copy:
//     protocol.HintsWhole over the streams open, protocol.WatchHintNewer
//     on each hint, protocol.WatchSettled on each confirming read, and
//     protocol.WatchDecide for every delivery. A hint is confirmed by the
//     node's proposer's linearizable read (Proposer.Read, the client's
//     get); a read that does not show the hint yet is repeated
//     (watchSettleTries, doubling delays). While the streams are not whole
//     (and after a configuration change), the hub resyncs: it re-reads
//     every watched key on a timer until a whole pass began and ended with
//     the streams whole. A new watcher's interest reaches the streams
//     before its first reads (or watchOpenTimeout passes).
//   - A prefix watcher "relists" by reading every key of the run under its
//     prefix (the simulator's keys are known; the listing itself is
//     checked on its own).
//   - A watcher whose node crashes moves to another node and resumes from
//     its marks (Hub.Watch's from).
//
// Three checks, for every watcher:
//
//  1. Never a value that was not chosen: every state a hub takes, and so
//     every state a watcher is delivered, goes into its key's history as a
//     get over [the confirming read's call, the delivery]; Porcupine must
//     find the key had it at some instant of that (with the clients'
//     operations, so that a state before its write or after its
//     successor's is caught too). A state merged by composition is a
//     state of the history too: the watcher sees it, or a jump.
//  2. Versions of a key only rise per watcher (checked at each delivery,
//     independently of protocol.WatchDecide).
//  3. The latest state of every watched key arrives: once the operations
//     are done, faults, GC and membership changes stop and every node that
//     can come back is up, each watcher must be delivered,
//     within watchSettleLimit (virtual time), the state of the highest
//     ballot chosen (accepted in synced storage by a majority of the
//     acceptors its accept went to, or by an accept quorum of a
//     configuration of the run) of every key it watches, or for a
//     deleted or collected key, nothing live.
//
// Variant.WatchRawAccepts delivers hints straight from one acceptor's
// accept, without the confirming read: check 1 catches it.
//
// The watchers' plan is drawn from a generator of its own (drawWatching),
// so that a run without watchers is the run it was before; the broken
// variants that a watcher's reads would hide (their repairs and catch-ups
// are exactly what those variants leave out) keep them off.

// Timings of the simulated hub (virtual time).
const (
	watchStreamTimeout = 6 * time.Millisecond  // a broken stream is noticed after this
	watchOpenRetry     = 4 * time.Millisecond  // a broken stream is opened again after this, doubling while it fails (up to 32 times)
	watchOpenTimeout   = 20 * time.Millisecond // a new watcher's first reads wait this long at most for the streams
	watchSettleDelay   = 2 * time.Millisecond  // first wait before a hint not confirmed yet is read again
	watchSettleTries   = 6
	watchFollowEvery   = 4                    // the hub checks its node's configuration every this many resync intervals (and at every hint)
	watchMoveDelay     = 3 * time.Millisecond // a watcher whose node crashed starts again elsewhere after this
	watchSettleLimit   = 10 * time.Second     // the end's bound for every watcher to get every latest state
	watchReqBase       = listReqBase + 1<<58  // watch reads' IDs, apart from clients', leases', listings', membership's and GC's
)

func isWatchReq(id protocol.ReqID) bool { return id >= watchReqBase && id < memberReqBase }

// drawWatching draws the plan's watchers from a generator of their own
// (seeded from the run's seed).
func drawWatching(p *Plan, seed uint64) {
	rng := rand.New(rand.NewPCG(seed^0x7761746368657273, seed+1))
	if rng.Float64() < 0.25 {
		p.Watchers = 1 + rng.IntN(2)
		p.WatchResync = between(rng, 5*time.Millisecond, 40*time.Millisecond)
	}
}

type watchMsgKind uint8

const (
	wmOpen        watchMsgKind = iota + 1 // node -> acceptor: open (or update) a subscription
	wmAck                                 // acceptor -> node: the subscription took interest seq
	wmHint                                // acceptor -> node: an accepted state, synced
	wmBroken                              // the node notices that its stream broke
	wmReopen                              // the node opens a stream again
	wmResync                              // the hub's resync timer
	wmRead                                // the hub reads key (again)
	wmDeadline                            // a watch read's deadline: cancel it
	wmOpenTimeout                         // a new watcher's first reads go ahead
	wmPlace                               // a watcher starts (again) on some node
	wmFollow                              // the hub checks its node's configuration (Hub.followConfig)
)

var watchMsgNames = [...]string{wmOpen: "open", wmAck: "ack", wmHint: "hint", wmBroken: "broken", wmReopen: "reopen",
	wmResync: "resync", wmRead: "read", wmDeadline: "read-deadline", wmOpenTimeout: "open-timeout", wmPlace: "place", wmFollow: "follow"}

// watchMsg is the payload of an evWatch event.
type watchMsg struct {
	kind     watchMsgKind
	from, to int    // node indexes (a stream: node to = the watcher's node, from = the acceptor, or the other way)
	hubInc   uint64 // the hub's node incarnation it is for
	gen      uint64 // the stream's generation
	seq      uint64 // the interest change
	key      string
	state    protocol.State
	ballot   protocol.Ballot
	interest *watchInterest
	watcher  *simWatcher
	req      protocol.ReqID
}

func (m *watchMsg) String() string {
	switch m.kind {
	case wmHint:
		return fmt.Sprintf("watch hint from node %d to node %d: %q %s", m.from+1, m.to+1, m.key, m.state)
	case wmPlace:
		return fmt.Sprintf("watcher %d places itself", m.watcher.id)
	}
	return fmt.Sprintf("watch %s node %d -> node %d key %q gen %d seq %d", watchMsgNames[m.kind], m.from+1, m.to+1, m.key, m.gen, m.seq)
}

// watchInterest is what a node watches: keys and prefixes.
type watchInterest struct {
	keys     map[string]bool
	prefixes []string
}

func (in *watchInterest) covers(key string) bool {
	if in.keys[key] {
		return true
	}
	for _, p := range in.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// watchState is the run's watching.
type watchState struct {
	watchers []*simWatcher
	hubs     []*simHub     // per node; nil: none (or the node is down)
	subs     [][]*watchSub // subs[acceptor][node]: the acceptor's subscription of node
	reads    map[protocol.ReqID]*watchRead
	nextReq  protocol.ReqID
	// history: the states the hubs took, as gets (see apply).
	history []porcupine.Operation
	// The ballots found chosen as syncs make them so, and per key the
	// state of the highest one: the key's latest state.
	chosenBK   map[ballotKey]bool
	latest     map[string]ballotState
	configMask []uint32 // accept-set masks of inv.configs, as far as computed
}

type ballotState struct {
	b  protocol.Ballot
	st protocol.State
}

// simWatcher is one watcher: what it watches, where it runs, what it was
// delivered.
type simWatcher struct {
	id     int
	keys   []string
	prefix string // "": none
	node   int    // -1: not placed
	inc    uint64 // the node's incarnation it runs on
	seq    uint64 // the interest change its first reads wait for
	ready  bool   // its first reads went out
	marks  map[string]protocol.WatchMark
	last   map[string]protocol.State // the state of each key delivered last
}

func (w *simWatcher) watches(key string) bool {
	for _, k := range w.keys {
		if k == key {
			return true
		}
	}
	return w.prefix != "" && strings.HasPrefix(key, w.prefix)
}

func (w *simWatcher) String() string {
	if w.prefix != "" {
		return fmt.Sprintf("watcher %d (prefix %q)", w.id, w.prefix)
	}
	return fmt.Sprintf("watcher %d (keys %v)", w.id, w.keys)
}

// watchSub is an acceptor's subscription of one node.
type watchSub struct {
	hubInc   uint64
	gen      uint64
	seq      uint64 // the interest change it holds
	interest *watchInterest
	hinted   map[string]protocol.Ballot // the last accepted ballot hinted per key
}

// watchRead is a confirming read in flight.
type watchRead struct {
	node int
	inc  uint64
	key  string
	gen  uint64        // the key's hub gen when it began
	call time.Duration // when it began
}

// simHub is one node's hub (server/watch.Hub).
type simHub struct {
	node     int
	inc      uint64
	watchers []*simWatcher
	interest *watchInterest
	seq      uint64
	keys     map[string]*hubKey
	streams  []hubStream // per acceptor node index
	conf     protocol.Config
	whole    bool
	resync   bool // the resync timer runs
	// the pass in progress: whether it began whole, and at which break
	passWhole  bool
	passBreaks uint64
	breaks     uint64
}

type hubKey struct {
	state   protocol.State
	top     uint64
	gen     uint64
	reading bool
	again   bool
	hint    protocol.State
	hinted  bool
	tries   int
}

type hubStream struct {
	member  bool   // the node streams from this acceptor
	gen     uint64 // rises at every (re)open
	acked   uint64 // the interest change it took last; 0: not open
	opening bool
	fails   int // breaks since it was last open: the reopen backs off
}

func (s *sim) watching() bool { return s.plan.Watchers > 0 }

// scheduleWatchers creates the plan's watchers; each places itself soon.
func (s *sim) scheduleWatchers() {
	if !s.watching() {
		return
	}
	ws := &s.watch
	ws.hubs = make([]*simHub, len(s.nodes))
	ws.subs = make([][]*watchSub, len(s.nodes))
	for i := range ws.subs {
		ws.subs[i] = make([]*watchSub, len(s.nodes))
	}
	ws.reads = make(map[protocol.ReqID]*watchRead)
	ws.chosenBK = make(map[ballotKey]bool)
	ws.latest = make(map[string]ballotState)
	for i := range s.plan.Watchers {
		w := &simWatcher{id: i + 1, node: -1, marks: map[string]protocol.WatchMark{}, last: map[string]protocol.State{}}
		switch r := s.rng.IntN(4); {
		case r == 0:
			w.prefix = "k1" // k1, k10, k11, k12
		// The clients' keys, s.keys[:Plan.Keys]; never a lease's (its
		// writes are not in the history the deliveries are checked in).
		case r == 1:
			w.keys = []string{s.keys[s.rng.IntN(s.plan.Keys)], s.keys[s.rng.IntN(s.plan.Keys)]}
		default:
			w.keys = []string{s.keys[s.rng.IntN(s.plan.Keys)]}
		}
		ws.watchers = append(ws.watchers, w)
		s.stats.Watchers++
		s.scheduleWatch(&watchMsg{kind: wmPlace, watcher: w}, s.jitter(10*time.Millisecond))
	}
}

func (s *sim) scheduleWatch(m *watchMsg, d time.Duration) {
	s.schedule(event{kind: evWatch, watch: m}, d)
}

// watchNet sends a stream message from node index m.from to m.to over
// the network's faults, as a stream (TCP) would: a message the network
// loses is sent again after a retransmission timeout (lost again, the
// stream breaks); one a partition cuts off breaks the stream. A node
// notices its stream broke after watchStreamTimeout (a heartbeat missed).
func (s *sim) watchNet(m *watchMsg) {
	from, to := m.from, m.to
	if from == to {
		s.scheduleWatch(m, localDelay)
		return
	}
	d := s.netDelay(from, to)
	if s.chance(s.plan.Loss) {
		s.stats.WatchRetransmits++
		d += watchStreamTimeout / 2
		if s.chance(s.plan.Loss) {
			s.breakStream(m)
			return
		}
	}
	if s.blocked[from][to] {
		s.breakStream(m)
		return
	}
	s.scheduleWatch(m, d)
}

// breakStream: m's stream broke on its way; its node notices after
// watchStreamTimeout.
func (s *sim) breakStream(m *watchMsg) {
	s.stats.WatchDropped++
	s.scheduleWatch(&watchMsg{kind: wmBroken, to: m.watcherNode(), from: m.acceptor(), hubInc: m.hubInc, gen: m.gen}, watchStreamTimeout)
}

// watcherNode is the watching node's end of a stream message.
func (m *watchMsg) watcherNode() int {
	if m.kind == wmOpen {
		return m.from
	}
	return m.to
}

// acceptor is the acceptor end of a stream message.
func (m *watchMsg) acceptor() int {
	if m.kind == wmOpen {
		return m.to
	}
	return m.from
}

func (s *sim) watchEvent(m *watchMsg) {
	if (m.kind == wmOpen || m.kind == wmAck || m.kind == wmHint) && s.blocked[m.from][m.to] {
		s.breakStream(m) // cut off on its way
		return
	}
	switch m.kind {
	case wmPlace:
		s.placeWatcher(m.watcher)
		return
	case wmOpen:
		s.subscribe(m)
		return
	case wmDeadline:
		s.watchDeadline(m)
		return
	}
	h := s.hubAt(m.to, m.hubInc)
	if h == nil {
		return
	}
	switch m.kind {
	case wmAck:
		h.onAck(s, m)
	case wmHint:
		h.onHint(s, m)
	case wmBroken:
		h.onBroken(s, m)
	case wmReopen:
		h.open(s, m.from)
	case wmResync:
		h.resyncTick(s)
	case wmRead:
		h.enqueue(s, m.key)
	case wmOpenTimeout:
		h.startReady(s, true)
	case wmFollow:
		h.follow(s)
		s.scheduleWatch(&watchMsg{kind: wmFollow, to: h.node, hubInc: h.inc}, s.jitter(watchFollowEvery*s.plan.WatchResync))
	}
}

// hubAt returns node idx's hub if it is still incarnation inc.
func (s *sim) hubAt(idx int, inc uint64) *simHub {
	h := s.watch.hubs[idx]
	n := s.nodes[idx]
	if h == nil || h.inc != inc || !n.up || n.inc != inc {
		return nil
	}
	return h
}

// placeWatcher starts w on a random node that is up and has joined.
func (s *sim) placeWatcher(w *simWatcher) {
	n := s.pickNode(func(n *node) bool { return n.up && !n.fresh && !n.lost })
	if n == nil {
		s.scheduleWatch(&watchMsg{kind: wmPlace, watcher: w}, watchMoveDelay)
		return
	}
	h := s.watch.hubs[n.idx]
	if h == nil || h.inc != n.inc {
		h = &simHub{node: n.idx, inc: n.inc, interest: &watchInterest{keys: map[string]bool{}},
			keys: map[string]*hubKey{}, streams: make([]hubStream, len(s.nodes))}
		s.watch.hubs[n.idx] = h
		s.scheduleWatch(&watchMsg{kind: wmFollow, to: h.node, hubInc: h.inc}, s.jitter(watchFollowEvery*s.plan.WatchResync))
	}
	if w.node >= 0 {
		s.stats.WatchMoves++
	}
	w.node, w.inc, w.ready = n.idx, n.inc, false
	h.watchers = append(h.watchers, w)
	// The new interest, numbered, goes to the streams before the reads.
	in := &watchInterest{keys: map[string]bool{}, prefixes: append([]string(nil), h.interest.prefixes...)}
	for k := range h.interest.keys {
		in.keys[k] = true
	}
	for _, k := range w.keys {
		in.keys[k] = true
	}
	if w.prefix != "" {
		in.prefixes = append(in.prefixes, w.prefix)
	}
	h.interest = in
	h.seq++
	w.seq = h.seq
	// What the hub knows already is delivered at once (Hub.add).
	for _, k := range s.keys {
		if ks := h.keys[k]; ks != nil && ks.gen > 0 && w.watches(k) {
			s.deliver1(h, w, k, ks.state)
		}
	}
	h.follow(s)
	for i := range h.streams {
		if st := &h.streams[i]; st.member && (st.acked > 0 || st.opening) {
			s.watchNet(&watchMsg{kind: wmOpen, from: h.node, to: i, hubInc: h.inc, gen: st.gen, seq: h.seq, interest: in})
		}
	}
	s.scheduleWatch(&watchMsg{kind: wmOpenTimeout, to: h.node, hubInc: h.inc}, watchOpenTimeout)
	h.startReady(s, false)
}

// follow moves the streams to the node's current configuration (the Hub's
// ensureStreams): a stream to each member of the accept set. A change of
// configuration forces a resync.
func (h *simHub) follow(s *sim) {
	conf := s.nodes[h.node].prop.Config()
	if conf.Version == h.conf.Version {
		return
	}
	changed := h.conf.Version != 0
	h.conf = conf.Clone()
	for i := range h.streams {
		st := &h.streams[i]
		in := slices.Contains(h.conf.AcceptSet, protocol.NodeID(i+1))
		switch {
		case st.member && !in:
			*st = hubStream{gen: st.gen + 1}
		case !st.member && in:
			st.member = true
			h.open(s, i)
		}
	}
	h.checkWhole(s, changed)
}

// open opens (again) the stream from acceptor i.
func (h *simHub) open(s *sim, i int) {
	st := &h.streams[i]
	if !st.member || st.acked > 0 || st.opening {
		return
	}
	st.gen++
	st.opening = true
	s.watchNet(&watchMsg{kind: wmOpen, from: h.node, to: i, hubInc: h.inc, gen: st.gen, seq: h.seq, interest: h.interest})
}

// subscribe: acceptor m.to takes (or updates) node m.from's subscription
// and acks it.
func (s *sim) subscribe(m *watchMsg) {
	a := s.nodes[m.to]
	if !a.up {
		s.scheduleWatch(&watchMsg{kind: wmBroken, to: m.from, from: m.to, hubInc: m.hubInc, gen: m.gen}, watchStreamTimeout)
		return
	}
	sub := s.watch.subs[m.to][m.from]
	if sub == nil || sub.hubInc != m.hubInc || sub.gen != m.gen {
		sub = &watchSub{hubInc: m.hubInc, gen: m.gen, hinted: map[string]protocol.Ballot{}}
		s.watch.subs[m.to][m.from] = sub
	}
	if m.seq > sub.seq { // an older interest arriving late changes nothing
		sub.interest, sub.seq = m.interest, m.seq
	}
	s.watchNet(&watchMsg{kind: wmAck, from: m.to, to: m.from, hubInc: m.hubInc, gen: m.gen, seq: sub.seq})
}

func (h *simHub) onAck(s *sim, m *watchMsg) {
	st := &h.streams[m.from]
	if !st.member || st.gen != m.gen {
		return
	}
	st.opening, st.fails = false, 0
	st.acked = max(st.acked, m.seq)
	h.checkWhole(s, false)
	h.startReady(s, false)
}

func (h *simHub) onBroken(s *sim, m *watchMsg) {
	st := &h.streams[m.from]
	if !st.member || st.gen != m.gen {
		return
	}
	s.stats.WatchBroken++
	st.acked, st.opening = 0, false
	st.fails++
	h.checkWhole(s, false)
	s.scheduleWatch(&watchMsg{kind: wmReopen, to: h.node, from: m.from, hubInc: h.inc}, s.jitter(watchOpenRetry<<min(st.fails-1, 5)))
}

// checkWhole recomputes whether the streams are whole
// (protocol.HintsWhole) and starts resyncing if they are not, or if force.
func (h *simHub) checkWhole(s *sim, force bool) {
	var open []protocol.NodeID
	for i, st := range h.streams {
		if st.member && st.acked > 0 {
			open = append(open, protocol.NodeID(i+1))
		}
	}
	h.whole = len(h.conf.AcceptSet) > 0 && protocol.HintsWhole(h.conf, open)
	if !h.whole || force {
		h.breaks++
		if !h.resync {
			h.resync = true
			h.passWhole, h.passBreaks = false, h.breaks
			s.scheduleWatch(&watchMsg{kind: wmResync, to: h.node, hubInc: h.inc}, 0)
		}
	}
}

// startReady sends the first reads of the watchers whose interest the
// streams took (whole for it), or all of them once the open timeout passed.
func (h *simHub) startReady(s *sim, timeout bool) {
	var took []protocol.NodeID
	for i, st := range h.streams {
		if st.member && st.acked > 0 {
			took = append(took, protocol.NodeID(i+1))
		}
	}
	for _, w := range h.watchers {
		if w.ready {
			continue
		}
		var tookSeq []protocol.NodeID
		for _, id := range took {
			if h.streams[id-1].acked >= w.seq {
				tookSeq = append(tookSeq, id)
			}
		}
		if !timeout && !protocol.HintsWhole(h.conf, tookSeq) {
			continue
		}
		w.ready = true
		for _, k := range s.keys {
			if w.watches(k) {
				h.enqueue(s, k)
			}
		}
	}
}

// resyncTick re-reads every watched key, until a pass that began whole
// ends whole with no break in between.
func (h *simHub) resyncTick(s *sim) {
	h.follow(s)
	if h.passWhole && h.whole && h.breaks == h.passBreaks {
		h.resync = false
		return
	}
	s.stats.WatchResyncs++
	h.passWhole, h.passBreaks = h.whole, h.breaks
	for _, k := range s.keys {
		if h.interest.covers(k) {
			h.enqueue(s, k)
		}
	}
	s.scheduleWatch(&watchMsg{kind: wmResync, to: h.node, hubInc: h.inc}, s.jitter(s.plan.WatchResync))
}

func (h *simHub) key(k string) *hubKey {
	ks := h.keys[k]
	if ks == nil {
		ks = &hubKey{}
		h.keys[k] = ks
	}
	return ks
}

// onHint takes an acceptor's hint: worth a read if newer than what the
// hub confirmed (protocol.WatchHintNewer).
func (h *simHub) onHint(s *sim, m *watchMsg) {
	st := h.streams[m.from]
	if !st.member || st.gen != m.gen || st.acked == 0 || !h.interest.covers(m.key) {
		return
	}
	h.follow(s)
	s.stats.WatchHints++
	ks := h.key(m.key)
	if !protocol.WatchHintNewer(protocol.WatchMark{Version: ks.top}, m.state) {
		return
	}
	if s.opts.Variant.WatchRawAccepts {
		h.apply(s, m.key, ks, m.state, ks.gen, s.now) // the broken variant: no confirming read
		return
	}
	if !ks.hinted || ks.hint.Version < m.state.Version {
		ks.hint, ks.hinted, ks.tries = m.state, true, 0
	}
	h.enqueue(s, m.key)
}

// enqueue reads k through the node's proposer (one read per key at a
// time; one more after it if asked meanwhile).
func (h *simHub) enqueue(s *sim, k string) {
	ks := h.key(k)
	if ks.reading {
		ks.again = true
		return
	}
	ks.reading = true
	ws := &s.watch
	ws.nextReq++
	id := watchReqBase + ws.nextReq
	n := s.nodes[h.node]
	ws.reads[id] = &watchRead{node: h.node, inc: h.inc, key: k, gen: ks.gen, call: s.now}
	n.pending[id] = k
	s.stats.WatchReads++
	s.callProposer(n, causeClient, func(p *protocol.Proposer) { p.Read(id, k) })
	s.scheduleWatch(&watchMsg{kind: wmDeadline, to: h.node, hubInc: h.inc, req: id}, s.plan.Deadline)
}

func (s *sim) watchDeadline(m *watchMsg) {
	if s.watch.reads[m.req] == nil || s.hubAt(m.to, m.hubInc) == nil {
		return
	}
	s.callProposer(s.nodes[m.to], causeCancel, func(p *protocol.Proposer) { p.Cancel(m.req) })
}

// watchResult takes a confirming read's answer.
func (s *sim) watchResult(n *node, r protocol.Result) {
	rd := s.watch.reads[r.ID]
	delete(s.watch.reads, r.ID)
	h := s.hubAt(n.idx, n.inc)
	if rd == nil || h == nil || rd.inc != n.inc {
		return
	}
	ks := h.key(rd.key)
	ks.reading = false
	if r.Err != nil {
		s.scheduleWatch(&watchMsg{kind: wmRead, to: h.node, hubInc: h.inc, key: rd.key}, s.jitter(s.plan.WatchResync))
	} else {
		h.apply(s, rd.key, ks, r.State, rd.gen, rd.call)
		h.settle(s, rd.key, ks, r.State)
	}
	if ks.again {
		ks.again = false
		h.enqueue(s, rd.key)
	}
}

// settle keeps a hint the read did not show (protocol.WatchSettled) and
// reads again later, watchSettleTries times at most.
func (h *simHub) settle(s *sim, k string, ks *hubKey, read protocol.State) {
	if !ks.hinted {
		return
	}
	if protocol.WatchSettled(ks.hint, read) || ks.tries >= watchSettleTries {
		ks.hinted, ks.tries = false, 0
		return
	}
	ks.tries++
	s.scheduleWatch(&watchMsg{kind: wmRead, to: h.node, hubInc: h.inc, key: k}, watchSettleDelay<<(ks.tries-1))
}

// apply takes a state of k (confirmed by a read begun at gen, at call)
// and delivers it to the hub's watchers of k if it is news (server/watch's
// apply). Every state a hub takes is what its watchers may be delivered,
// now or later: it goes into the key's history as a get over [call, now],
// which Porcupine must find the key had at some instant of it.
func (h *simHub) apply(s *sim, k string, ks *hubKey, st protocol.State, gen uint64, call time.Duration) {
	news := st.Version > ks.top || st.Version == 0 && ks.state.Version > 0 && ks.gen == gen
	if !news {
		return
	}
	s.watch.history = append(s.watch.history, porcupine.Operation{ClientId: watchClientBase + h.node,
		Input: input{kind: opGet, key: k}, Call: int64(call), Output: output{outcome: outOK, state: fromState(st)}, Return: int64(s.now)})
	ks.state, ks.gen, ks.top = st, ks.gen+1, max(ks.top, st.Version)
	for _, w := range h.watchers {
		if w.watches(k) {
			s.deliver1(h, w, k, st)
		}
	}
}

// deliver1 decides with protocol.WatchDecide whether w gets st, and checks
// what it gets.
func (s *sim) deliver1(h *simHub, w *simWatcher, k string, st protocol.State) {
	ev, next, ok := protocol.WatchDecide(w.marks[k], st)
	if !ok {
		return
	}
	w.marks[k] = next
	s.stats.WatchEvents++
	if ev.Jump() {
		s.stats.WatchJumps++
	}
	if prev, seen := w.last[k]; seen && ev.State.Version != 0 && ev.State.Version <= prev.Version {
		s.fail("watch: %s on node %d: %q went from %s to %s", w, h.node+1, k, prev, ev.State)
		return
	}
	w.last[k] = ev.State
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "%12v  %s on node %d gets %q %s (previous version %d)\n", s.now, w, h.node+1, k, ev.State, ev.PrevVersion)
	}
}

// watchSynced records the states that syncs on n make chosen and sends
// hints of the synced accepts to n's subscribers. Called after the
// invariants took the sync.
func (s *sim) watchSynced(n *node, done []write) {
	if !s.watching() {
		return
	}
	for _, w := range done {
		if !w.isRegister() || w.remove || w.reg.Accepted.IsZero() {
			continue
		}
		s.noteChosen(ballotKey{w.key, w.reg.Accepted}, w.reg.State)
		for to, sub := range s.watch.subs[n.idx] {
			if sub == nil || !sub.interest.covers(w.key) || sub.hinted[w.key] == w.reg.Accepted {
				continue
			}
			sub.hinted[w.key] = w.reg.Accepted
			s.watchNet(&watchMsg{kind: wmHint, from: n.idx, to: to, hubInc: sub.hubInc, gen: sub.gen, key: w.key, state: w.reg.State, ballot: w.reg.Accepted})
		}
	}
}

// noteChosen records bk's state as chosen once an accept quorum holds it
// in synced storage: a majority of the acceptors its accept went to
// (invariants.acceptQuorum), or an accept quorum of any configuration of
// the run (what a reader of that configuration counts).
func (s *sim) noteChosen(bk ballotKey, st protocol.State) {
	ws := &s.watch
	if ws.chosenBK[bk] {
		return
	}
	held := s.inv.syncedBy[bk]
	ok := s.inv.acceptQuorum(bk, held)
	for i, c := range s.inv.configs {
		if ok {
			break
		}
		if i == len(ws.configMask) {
			var mask uint32
			for _, id := range c.AcceptSet {
				mask |= 1 << (id - 1)
			}
			ws.configMask = append(ws.configMask, mask)
		}
		ok = bits.OnesCount32(held&ws.configMask[i]) >= c.AcceptQuorum
	}
	if !ok {
		return
	}
	ws.chosenBK[bk] = true
	if l := ws.latest[bk.key]; l.b.Less(bk.b) {
		ws.latest[bk.key] = ballotState{bk.b, st}
	}
}

// watchCrash: n's hub and its subscriptions at other acceptors go (the
// acceptors' streams to it break), its acceptor's subscriptions go (their
// nodes notice after watchStreamTimeout), and its watchers move.
func (s *sim) watchCrash(n *node) {
	if !s.watching() {
		return
	}
	ws := &s.watch
	for to, sub := range ws.subs[n.idx] {
		if sub != nil {
			s.scheduleWatch(&watchMsg{kind: wmBroken, to: to, from: n.idx, hubInc: sub.hubInc, gen: sub.gen}, watchStreamTimeout)
			ws.subs[n.idx][to] = nil
		}
	}
	for a := range ws.subs {
		ws.subs[a][n.idx] = nil
	}
	if h := ws.hubs[n.idx]; h != nil {
		for _, w := range h.watchers {
			s.scheduleWatch(&watchMsg{kind: wmPlace, watcher: w}, watchMoveDelay)
		}
		ws.hubs[n.idx] = nil
	}
	for id, rd := range ws.reads {
		if rd.node == n.idx {
			delete(ws.reads, id) // map order does not matter: each is only dropped
		}
	}
}

// settleWatchers runs after the operations are done: faults, GC and
// membership changes stop (every node that can come back is up,
// partitions heal, slow nodes are fast again; a GC or a change under way
// stays where it is, so that no catch-up rewrites keys for the watchers),
// until every placed watcher was
// delivered the latest chosen state of every key it watches, or
// watchSettleLimit passes (a failure).
func (s *sim) settleWatchers() {
	if !s.watching() || s.failure != nil {
		return
	}
	for _, row := range s.blocked {
		clear(row)
	}
	for _, n := range s.nodes {
		n.slowDisk, n.slowNet = 1, 1
		if !n.up && !n.lost && !n.fresh {
			s.restart(n)
		}
	}
	s.tracef("watch: operations done; faults stop; waiting for every watcher to get every latest state")
	deadline := s.now + watchSettleLimit
	limit := s.stats.Events + maxEventsPerOp*s.opts.Ops
	for s.failure == nil && len(s.agenda) > 0 {
		if s.watchersSettled() == "" {
			s.stats.WatchSettled++
			return
		}
		ev := s.agenda.pop()
		if ev.at > deadline || s.stats.Events > limit {
			break
		}
		s.now = ev.at
		if ev.kind != evFaultStart && ev.kind != evClientNext && ev.kind != evGC && ev.kind != evMember { // faults, GC and membership stopped; the clients are done
			s.trace.record(ev)
			if s.opts.Trace != nil {
				fmt.Fprintf(s.opts.Trace, "%12v  %v\n", s.now, ev)
			}
			s.dispatch(ev)
			s.stats.Events++
		}
		*ev = event{}
		s.free = append(s.free, ev)
	}
	if s.failure == nil {
		s.fail("watch: the watchers did not all get the latest state of their keys within %v after the operations ended: %s", watchSettleLimit, s.watchersSettled())
	}
}

// watchersSettled describes a watcher that lacks the latest chosen state
// of a key it watches ("": none).
func (s *sim) watchersSettled() string {
	for _, w := range s.watch.watchers {
		if w.node < 0 {
			return fmt.Sprintf("%s was never placed", w)
		}
		for _, k := range s.keys {
			if !w.watches(k) {
				continue
			}
			l, ok := s.watch.latest[k]
			if !ok {
				continue
			}
			latest := l.st
			if gc := s.inv.collected[k]; !gc.IsZero() && !gc.Less(l.b) {
				latest = protocol.State{}
			}
			got, seen := w.last[k]
			switch {
			case latest.Exists() && !got.Equal(latest):
				return fmt.Sprintf("%s on node %d: %q delivered %s, latest %s", w, w.node+1, k, got, latest)
			case !latest.Exists() && seen && got.Exists():
				return fmt.Sprintf("%s on node %d: %q delivered %s, latest %s (deleted)", w, w.node+1, k, got, latest)
			}
		}
	}
	return ""
}

// watchClientBase sets the Porcupine clients of the hubs' reads apart.
const watchClientBase = 1 << 20
