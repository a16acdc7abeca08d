package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/list"
)

// Listing (COORDINATION.md, Listing) as listers of the run, beside the
// clients. A lister asks a node for a listing of a prefix ("" for every
// key, "k" or "k1"), page after page, and the simulator is that node's
// lister, as server/list.Lister is a daemon's:
//
//  1. each round takes the node's proposer's configuration, sends a scan
//     of the page's range (at most Plan.ListBatch keys, from its start) to
//     every acceptor of its accept set over the faulty network, and waits
//     for the first cfg.ReadQuorum() replies;
//  2. an acceptor answers with list.ScanStore over what its last Steps
//     left (synced or not, as a Pebble store shows a write before its
//     sync), and its reply leaves only once every write made before the
//     scan is synced (the acceptor's scan barrier; Variant.ScanBeforeSync
//     leaves that out);
//  3. the round's replies go through protocol.MergeList with that same
//     quorum; a key it finds chosen is returned if live, a key it leaves
//     undecided is read through the node's proposer (Proposer.Read), one
//     at a time in key order; the next round starts after the merge's
//     through key;
//  4. a round whose node changed configuration before its quorum of
//     replies arrived is asked again under the new configuration
//     (protocol.ListRoundStale, which says why).
//
// A page ends with its limit, at the end of its range, at its deadline
// (Plan.Deadline), when a read fails, or when its node crashes. What it
// returned up to then is checked:
//
//   - every item is a Get of its key over the page's call, [call, end]
//     (in the histories Porcupine checks): the key had that value and
//     version at some instant of the call; the model refuses such a read
//     of a key deleted or absent throughout it, so that no deleted key is
//     returned either;
//   - a page that ended well returns every key within what it covered
//     (its prefix, after its After, up to its last key if it stopped at
//     its limit) that was live throughout its call (checkListings).
//
// Pages are independent: the result is not a snapshot across keys.

// listReqBase sets listing reads' request IDs apart from clients',
// catch-ups' and GC's.
const listReqBase = leaseReqBase + 1<<58

func isListReq(id protocol.ReqID) bool { return id >= listReqBase && id < watchReqBase }

// listPagesMax is the most pages one listing follows.
const listPagesMax = 4

type listState struct {
	listers []*lister
	pages   []*listPage // every page, in the order they began
	byReq   map[protocol.ReqID]*listPage
	nextReq protocol.ReqID
	active  int // pages in flight
}

// lister runs one listing at a time, one page at a time.
type lister struct {
	idx       int
	prefix    string
	after     string // the next page starts after this key
	limit     int
	pagesLeft int
	page      *listPage // the page in flight, if any
}

// listPage is one page a lister asked for, and the lister's work on it.
type listPage struct {
	id            int // index in listState.pages
	lister        int
	node          int
	inc           uint64
	prefix, after string
	limit         int
	call, ret     time.Duration
	items         []listItem
	ended         bool
	done, more    bool // done: ended well; more: stopped at its limit
	why           string
	left          int
	startCfg      uint64 // the node's configuration version when the page began

	// The round in flight.
	round    int
	cfg      protocol.Config
	quorum   int
	rng      list.Range
	replies  []protocol.ListReply
	repliers []protocol.NodeID
	// The round's merge, worked through key by key.
	merging bool
	keys    []protocol.ListKey
	next    int
	through string
	merged  bool           // the merge covered the rest of the range
	read    protocol.ReqID // the read in flight for keys[next], if any
}

type listItem struct {
	key   string
	state protocol.State
}

// scanMsg is a scan request (evScan) or its reply (evScanReply). from is
// the lister's node, to the acceptor's (node indices).
type scanMsg struct {
	page     *listPage
	round    int
	from, to int
	r        list.Range
	reply    protocol.ListReply
}

// pendingScan is a scan reply waiting for the writes before its scan to
// be synced.
type pendingScan struct {
	wait uint64
	msg  *scanMsg
}

func (s *sim) scheduleListers() {
	if s.plan.ListEvery == 0 {
		return
	}
	s.lists.byReq = make(map[protocol.ReqID]*listPage)
	for i := range s.plan.Listers {
		s.lists.listers = append(s.lists.listers, &lister{idx: i})
		s.schedule(event{kind: evListNext, client: i}, s.jitter(s.plan.ListEvery))
	}
}

// listNext starts a lister's next page: the next of its listing, or the
// first of a new one.
func (s *sim) listNext(l *lister) {
	if s.w.issued >= s.opts.Ops {
		return // the run is winding down
	}
	if l.pagesLeft == 0 {
		l.prefix = pick(s.rng, "", "k", "k1")
		l.after = ""
		l.limit = pick(s.rng, 1, 2, 3, 100)
		l.pagesLeft = 1 + s.rng.IntN(listPagesMax)
	}
	n := s.pickNode(func(n *node) bool { return n.up && !n.fresh })
	if n == nil {
		s.schedule(event{kind: evListNext, client: l.idx}, s.jitter(s.plan.ListEvery))
		return
	}
	l.pagesLeft--
	p := &listPage{id: len(s.lists.pages), lister: l.idx, node: n.idx, inc: n.inc, prefix: l.prefix, after: l.after,
		limit: l.limit, left: l.limit, call: s.now, startCfg: n.prop.Config().Version}
	s.lists.pages = append(s.lists.pages, p)
	s.lists.active++
	l.page = p
	p.rng = list.Range{Prefix: p.prefix, Start: list.Start(p.prefix, p.after), MaxBytes: 1 << 20, MaxValueBytes: 1 << 20}
	s.tracef("lister %d asks node %d for a page of %q after %q, limit %d", l.idx, n.id, p.prefix, p.after, p.limit)
	s.schedule(event{kind: evListDeadline, client: l.idx, req: protocol.ReqID(p.id)}, s.plan.Deadline)
	s.listRound(p)
}

// listRound asks every acceptor of the node's accept set for the page's
// next range.
func (s *sim) listRound(p *listPage) {
	n := s.nodes[p.node]
	p.round++
	p.cfg = n.prop.Config()
	p.quorum = max(1, p.cfg.ReadQuorum()-s.opts.Variant.ListQuorumShortBy)
	p.replies, p.repliers = nil, nil
	p.merging, p.keys, p.next = false, nil, 0
	p.rng.Limit = min(p.left, s.plan.ListBatch)
	s.stats.ListRounds++
	for _, id := range p.cfg.AcceptSet {
		to := int(id) - 1
		s.transmit(p.node, to, event{kind: evScan, node: to, scan: &scanMsg{page: p, round: p.round, from: p.node, to: to, r: p.rng}})
	}
}

// scanAt is an acceptor's scan: list.ScanStore over what its Steps left.
func (s *sim) scanAt(ev *event) {
	m := ev.scan
	n := s.nodes[m.to]
	if !n.up {
		return
	}
	if s.blocked[m.from][m.to] {
		s.stats.Partitioned++
		return
	}
	rep, err := list.ScanStore(diskScan{n.disk}, m.r)
	if err != nil {
		s.fail("sim: scan at node %d: %v", n.id, err)
		return
	}
	s.stats.Scans++
	reply := &scanMsg{page: m.page, round: m.round, from: m.from, to: m.to, r: m.r, reply: rep}
	// The barrier: every write made so far (those this scan may show)
	// synced before the reply leaves.
	wait := n.disk.nextSeq - 1
	if s.opts.Variant.ScanBeforeSync || n.disk.isSynced(wait) {
		s.transmit(m.to, m.from, event{kind: evScanReply, node: m.from, scan: reply})
		return
	}
	s.stats.ScansHeld++
	n.scans = append(n.scans, pendingScan{wait: wait, msg: reply})
}

// releaseScans sends the scan replies whose writes are synced.
func (s *sim) releaseScans(n *node) {
	keep := n.scans[:0]
	for _, ps := range n.scans {
		if n.disk.isSynced(ps.wait) {
			s.transmit(ps.msg.to, ps.msg.from, event{kind: evScanReply, node: ps.msg.from, scan: ps.msg})
		} else {
			keep = append(keep, ps)
		}
	}
	clear(n.scans[len(keep):])
	n.scans = keep
}

// diskScan is a disk's registers as list.ScanStore reads a store: in key
// order from start, what the acceptor's Steps left.
type diskScan struct{ d *disk }

func (d diskScan) Scan(start string, fn func(string, protocol.Register) bool) error {
	keys := make([]string, 0, len(d.d.view))
	for k := range d.d.view {
		if k >= start {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn(k, d.d.view[k]) {
			break
		}
	}
	return nil
}

// scanReply hands an acceptor's reply to the page's round, and merges the
// round once it has its quorum of replies.
func (s *sim) scanReply(ev *event) {
	m := ev.scan
	p := m.page
	n := s.nodes[m.from]
	if !n.up || n.inc != p.inc || p.ended || m.round != p.round || p.merging {
		return
	}
	if s.blocked[m.to][m.from] {
		s.stats.Partitioned++
		return
	}
	id := s.nodes[m.to].id
	if slices.Contains(p.repliers, id) {
		return // a duplicate
	}
	p.repliers = append(p.repliers, id)
	p.replies = append(p.replies, m.reply)
	if len(p.replies) < p.quorum {
		return
	}
	p.merging = true
	if now := n.prop.Config(); now.Version != p.cfg.Version {
		s.stats.ListRoundsAcrossChange++
		if protocol.ListRoundStale(p.cfg, now) {
			s.listRound(p)
			return
		}
	}
	p.keys, p.through, p.merged = protocol.MergeList(p.quorum, p.replies)
	p.replies = nil
	s.listContinue(p)
}

// listContinue works through the round's merge from p.next: a chosen key
// is returned if live, an undecided one read; then the next round.
func (s *sim) listContinue(p *listPage) {
	for p.next < len(p.keys) {
		k := p.keys[p.next]
		if k.Verdict == protocol.ListUndecided {
			s.listRead(p, k.Key)
			return
		}
		p.next++
		if s.listEmit(p, k.Key, k.State) {
			return
		}
	}
	if p.merged {
		s.listEnd(p, true, false, "")
		return
	}
	p.rng.Start = p.through + "\x00" // the least key after through
	s.listRound(p)
}

// listEmit returns key if st is live, and ends the page at its limit.
func (s *sim) listEmit(p *listPage, key string, st protocol.State) (ended bool) {
	if !st.Exists() {
		return false
	}
	p.items = append(p.items, listItem{key: key, state: st})
	s.stats.ListItems++
	if p.left--; p.left > 0 {
		return false
	}
	s.listEnd(p, true, p.next < len(p.keys) || !p.merged, "")
	return true
}

// listRead reads key, on which the round's replies disagreed, through the
// node's proposer.
func (s *sim) listRead(p *listPage, key string) {
	n := s.nodes[p.node]
	s.lists.nextReq++
	id := listReqBase + s.lists.nextReq
	p.read = id
	s.lists.byReq[id] = p
	n.pending[id] = key
	s.stats.ListReads++
	s.callProposer(n, causeClient, func(pr *protocol.Proposer) { pr.Read(id, key) })
}

// listResult takes a listing read's answer; the page goes on at an event
// of its own, not inside the Ready being released.
func (s *sim) listResult(r protocol.Result) {
	p := s.lists.byReq[r.ID]
	delete(s.lists.byReq, r.ID)
	if p == nil || p.ended || p.read != r.ID {
		return
	}
	p.read = 0
	if r.Err != nil {
		s.stats.ListReadsFailed++
		s.listEnd(p, false, false, fmt.Sprintf("a read failed: %v", r.Err))
		return
	}
	key := p.keys[p.next].Key
	p.next++
	if s.listEmit(p, key, r.State) {
		return
	}
	s.schedule(event{kind: evListStep, client: p.lister, req: protocol.ReqID(p.id)}, 0)
}

func (s *sim) listStep(ev *event) {
	p := s.lists.pages[ev.req]
	if !p.ended && p.read == 0 {
		s.listContinue(p)
	}
}

// listDeadline ends a page still running at its deadline.
func (s *sim) listDeadline(ev *event) {
	p := s.lists.pages[ev.req]
	if p.ended {
		return
	}
	if p.read != 0 {
		s.callProposer(s.nodes[p.node], causeCancel, func(pr *protocol.Proposer) { pr.Cancel(p.read) })
	}
	if !p.ended {
		s.listEnd(p, false, false, "deadline")
	}
}

// loseLists ends the pages running at a node that crashed.
func (s *sim) loseLists(n *node) {
	for _, l := range s.lists.listers {
		if p := l.page; p != nil && p.node == n.idx {
			s.listEnd(p, false, false, "its node crashed")
		}
	}
}

// listEnd ends a page and schedules its lister's next one.
func (s *sim) listEnd(p *listPage, done, more bool, why string) {
	p.ended, p.done, p.more, p.why, p.ret = true, done, more, why, s.now
	if p.read != 0 {
		delete(s.lists.byReq, p.read)
	}
	s.lists.active--
	s.stats.ListPages++
	n := s.nodes[p.node]
	if done {
		s.stats.ListPagesDone++
	}
	if n.prop != nil && n.inc == p.inc && n.prop.Config().Version != p.startCfg {
		s.stats.ListPagesAcrossChange++
	}
	s.tracef("lister %d's page %s", p.lister, p)
	l := s.lists.listers[p.lister]
	l.page = nil
	if done && more && l.pagesLeft > 0 {
		l.after = p.items[len(p.items)-1].key
		s.schedule(event{kind: evListNext, client: l.idx}, s.jitter(s.plan.Think))
		return
	}
	l.pagesLeft = 0
	s.schedule(event{kind: evListNext, client: l.idx}, s.jitter(s.plan.ListEvery))
}

func (p *listPage) String() string {
	keys := make([]string, len(p.items))
	for i, it := range p.items {
		keys[i] = fmt.Sprintf("%s=%q@v%d", it.key, it.state.Value, it.state.Version)
	}
	end := "ended well"
	if !p.done {
		end = "ended early: " + p.why
	}
	return fmt.Sprintf("%d at node %d (prefix %q, after %q, limit %d) from %v to %v: [%s] more=%v, %s",
		p.id, p.node+1, p.prefix, p.after, p.limit, p.call, p.ret, strings.Join(keys, " "), p.more, end)
}

// covers reports whether key lies in what p, a page that ended well,
// answered for: its prefix, after its After, up to its last key if it
// stopped at its limit.
func (p *listPage) covers(key string) bool {
	if !strings.HasPrefix(key, p.prefix) || (p.after != "" && key <= p.after) {
		return false
	}
	return !p.more || key <= p.items[len(p.items)-1].key
}

// listHistory is every item returned as a Get of its key over its page's
// call, for Porcupine.
func (s *sim) listHistory() []porcupine.Operation {
	var ops []porcupine.Operation
	for _, p := range s.lists.pages {
		for _, it := range p.items {
			ops = append(ops, porcupine.Operation{ClientId: listClientBase + p.lister, Input: input{key: it.key, kind: opGet},
				Call: int64(p.call), Output: output{outcome: outOK, state: fromState(it.state)}, Return: int64(p.ret)})
		}
	}
	return ops
}

// listClientBase sets listers apart from clients in Porcupine's histories.
const listClientBase = 1 << 20

// checkListings checks the completeness half of the guarantee on every
// page that ended well: each key live throughout its call, within what it
// covered, was returned.
func (s *sim) checkListings() {
	byKey := make(map[string][]*op)
	for _, o := range s.w.ops {
		byKey[o.in.key] = append(byKey[o.in.key], o)
	}
	for _, p := range s.lists.pages {
		if !p.done {
			continue
		}
		for _, k := range s.keys {
			if !p.covers(k) || !liveThroughout(byKey[k], p.call, p.ret) {
				continue
			}
			s.stats.ListLiveChecked++
			if !slices.ContainsFunc(p.items, func(it listItem) bool { return it.key == k }) {
				s.fail("listing: key %q was live throughout lister %d's page %s, and is missing", k, p.lister, p)
				return
			}
		}
	}
}

// liveThroughout reports whether ops, the operations on one key, show it
// live from call to ret. A write that succeeded and left the key live
// returned before call; and no delete may have taken effect after that
// write began and before ret: none that succeeded and returned after it
// was called, none of unknown outcome that may take effect then (called
// before ret, and not closed before the write was called). The later a
// write was called, the fewer deletes may follow it: the write called last
// among those decides. Only a delete ends a key's life; GC removes
// tombstones only.
func liveThroughout(ops []*op, call, ret time.Duration) bool {
	var w *op
	for _, o := range ops {
		if o.status == opDone && o.out.outcome == outOK && o.in.kind != opGet && o.in.kind != opDelete &&
			o.out.state.exists && o.ret < call && (w == nil || o.call > w.call) {
			w = o
		}
	}
	if w == nil {
		return false
	}
	for _, d := range ops {
		if d.in.kind != opDelete || d.call >= ret {
			continue
		}
		switch d.status {
		case opUnknown:
			if !d.unsent && !(d.closed && d.closeAt < w.call) {
				return false
			}
		case opDone:
			if d.out.outcome == outOK && d.ret > w.call {
				return false
			}
		}
	}
	return true
}
