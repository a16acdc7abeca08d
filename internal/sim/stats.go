package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Stats counts what a run (or a sweep, added up) exercised.
type Stats struct {
	Runs3, Runs5        int                  // runs with 3 and with 5 nodes
	Ops                 [opIncrement + 1]int // issued, by kind
	VersionedDeletes    int                  // deletes that name a version
	Succeeded, Refused  int
	Unknown             int // answered ErrUnknownOutcome
	NeverAnswered       int // their node crashed
	LostUnsent          int // ... before any accept carried their change off it
	Aborted             int
	ClosedUnknowns      int // unknown outcomes closed by the retirement rule
	Unavailable         int // operations not sent: the chosen node was down
	HomeRouted          int // operations sent to their key's home node ...
	RandomRouted        int // ... or to any node
	Prepares, Accepts   int // attempts (not messages)
	OneRoundTrip        int // accepts that skipped phase 1 (ballot from the cache)
	Composed            int // accepts carrying more than one change
	FastReads           int // reads answered by the read fast path
	SlowReads           int // reads answered through the normal path (fallbacks)
	SlowFastReads       int // FastReads answered ErrSlowRead (then sent as Read)
	Chosen              int
	Crashes             int
	PartitionsSymmetric int
	PartitionsOneWay    int
	PartitionsRing      int
	SlowPeriods         int
	Lost, Duplicated    int // messages
	Reordered           int
	Partitioned         int // messages dropped by a partition
	Syncs               int
	HeldReadys          int // Readys that waited for their ceiling's sync
	GCStarted           int // deletion GC runs begun ...
	GCDone              int // ... and finished on every node
	GCRemoved           int // registers removed by GC
	GCFenced            int // requests refused by an acceptor's age fence
	FloorRefused        int // requests refused by an acceptor's floor (§12)
	CeilingRaises       int // acceptor ceilings raised (each one write, synced before replies)
	PromisesUnsynced    int // promise replies sent before their write was synced
	MemberChanges       int // membership changes begun ...
	MemberDone          int // ... and finished
	CatchUpKeys         int // keys rewritten by catch-ups
	Wipes               int // acceptors emptied before being added back
	DiskLosses          int // crashes that lost the whole disk (Plan.DiskLoss)
	LostReadded         int // nodes that lost their disk, added back by a membership change
	FreshJoins          int // nodes that joined for the first time, empty, by a membership change
	// Exactly-once writes (idempotent.go): writes given a request ID,
	// attempts sent again with it, attempts answered with their write's
	// first outcome, attempts refused for their ID, tombstones GC kept
	// for their IDs.
	IDWrites, IDRetries, IDRepeats, IDRefused, GCHeld int
	// Leases (lease.go): grants and keep-alives acknowledged, expiries
	// chosen, reads.
	LeaseGrants, LeaseRenewals, LeaseExpiries, LeaseReads int
	AttachedDeletes                                       int // tombstones chosen on keys attached to leases (attached.go)
	// Locks (lock.go): holds checked, breaks committed.
	LockHolds, LockBreaks  int
	ListPages              int // listing pages begun and ended ...
	ListPagesDone          int // ... those that ended well
	ListRounds             int // scan rounds (a page has one or more)
	Scans                  int // scans acceptors answered ...
	ScansHeld              int // ... of which waited for writes before them to sync
	ListItems              int // keys returned
	ListReads              int // keys the scans disagreed on, read through a proposer
	ListReadsFailed        int // ... whose read failed (the page ended)
	ListLiveChecked        int // (page, key live throughout it) pairs checked as returned
	ListRoundsAcrossChange int // rounds whose node changed configuration before their replies were in
	ListPagesAcrossChange  int // pages whose node changed configuration during the page
	Events                 int
	VirtualTime            time.Duration
	// Watching (watch.go).
	Watchers         int // watchers placed
	WatchEvents      int // deliveries
	WatchJumps       int // deliveries that skip versions
	WatchHints       int // hints taken by a hub
	WatchReads       int // confirming and resync reads
	WatchResyncs     int // resync passes
	WatchBroken      int // hint streams broken
	WatchDropped     int // stream messages the network dropped (breaking their stream)
	WatchRetransmits int // stream messages the network lost once (sent again)
	WatchMoves       int // watchers that moved to another node
	WatchSettled     int // runs whose watchers all got every latest state
}

// Add adds o's counts to st.
func (st *Stats) Add(o Stats) {
	for i := range st.Ops {
		st.Ops[i] += o.Ops[i]
	}
	of := o.fields()
	for i, f := range st.fields() {
		*f.n += *of[i].n
	}
	st.VirtualTime += o.VirtualTime
}

type statField struct {
	name     string
	n        *int
	required bool // a sweep that never exercises it is vacuous
}

func (st *Stats) fields() []statField {
	return []statField{
		{"runs-3-nodes", &st.Runs3, true},
		{"runs-5-nodes", &st.Runs5, true},
		{"versioned-deletes", &st.VersionedDeletes, true},
		{"succeeded", &st.Succeeded, true},
		{"refused", &st.Refused, true},
		{"unknown-outcome", &st.Unknown, true},
		{"never-answered", &st.NeverAnswered, true},
		{"lost-unsent", &st.LostUnsent, true},
		{"aborted", &st.Aborted, true},
		{"closed-unknowns", &st.ClosedUnknowns, true},
		{"unavailable", &st.Unavailable, false},
		{"home-routed", &st.HomeRouted, true},
		{"random-routed", &st.RandomRouted, true},
		{"prepares", &st.Prepares, true},
		{"accepts", &st.Accepts, true},
		{"one-round-trip-accepts", &st.OneRoundTrip, true},
		{"composed-accepts", &st.Composed, true},
		{"fast-reads", &st.FastReads, true},
		{"slow-reads", &st.SlowReads, true},
		{"fast-reads-refused", &st.SlowFastReads, true},
		{"chosen", &st.Chosen, true},
		{"crashes", &st.Crashes, true},
		{"partitions-symmetric", &st.PartitionsSymmetric, true},
		{"partitions-one-way", &st.PartitionsOneWay, true},
		{"partitions-ring", &st.PartitionsRing, true},
		{"slow-periods", &st.SlowPeriods, true},
		{"lost", &st.Lost, true},
		{"duplicated", &st.Duplicated, true},
		{"reordered", &st.Reordered, true},
		{"partitioned", &st.Partitioned, true},
		{"syncs", &st.Syncs, true},
		{"held-readys", &st.HeldReadys, true},
		{"gc-started", &st.GCStarted, true},
		{"gc-done", &st.GCDone, true},
		{"gc-removed", &st.GCRemoved, true},
		{"gc-fenced", &st.GCFenced, true},
		{"floor-refused", &st.FloorRefused, true},
		{"acceptor-ceiling-raises", &st.CeilingRaises, true},
		{"promises-unsynced", &st.PromisesUnsynced, true},
		{"member-changes", &st.MemberChanges, true},
		{"member-done", &st.MemberDone, true},
		{"catch-up-keys", &st.CatchUpKeys, true},
		{"wipes", &st.Wipes, true},
		{"disk-losses", &st.DiskLosses, true},
		{"lost-readded", &st.LostReadded, false},
		{"fresh-joins", &st.FreshJoins, true},
		{"id-writes", &st.IDWrites, true},
		{"id-retries", &st.IDRetries, true},
		{"id-repeats", &st.IDRepeats, true},
		{"id-refused", &st.IDRefused, false},
		{"gc-held", &st.GCHeld, false},
		{"lease-grants", &st.LeaseGrants, true},
		{"lease-renewals", &st.LeaseRenewals, true},
		{"lease-expiries", &st.LeaseExpiries, true},
		{"lease-reads", &st.LeaseReads, true},
		{"lock-holds", &st.LockHolds, true},
		{"lock-breaks", &st.LockBreaks, true},
		{"list-pages", &st.ListPages, true},
		{"list-pages-done", &st.ListPagesDone, true},
		{"list-rounds", &st.ListRounds, true},
		{"scans", &st.Scans, true},
		{"scans-held", &st.ScansHeld, true},
		{"list-items", &st.ListItems, true},
		{"list-reads", &st.ListReads, true},
		{"list-reads-failed", &st.ListReadsFailed, true},
		{"list-live-checked", &st.ListLiveChecked, true},
		{"list-rounds-across-change", &st.ListRoundsAcrossChange, true},
		{"list-pages-across-change", &st.ListPagesAcrossChange, true},
		{"events", &st.Events, true},
		{"watchers", &st.Watchers, true},
		{"watch-events", &st.WatchEvents, true},
		{"watch-jumps", &st.WatchJumps, true},
		{"watch-hints", &st.WatchHints, true},
		{"watch-reads", &st.WatchReads, true},
		{"watch-resyncs", &st.WatchResyncs, true},
		{"watch-broken", &st.WatchBroken, true},
		{"watch-dropped", &st.WatchDropped, true},
		{"watch-retransmits", &st.WatchRetransmits, true},
		{"watch-moves", &st.WatchMoves, true},
		{"watch-settled", &st.WatchSettled, true},
	}
}

// Missing names the counters a sweep must exercise that are still zero,
// including each kind of operation.
func (st *Stats) Missing() []string {
	var missing []string
	for k := opGet; k <= opIncrement; k++ {
		if st.Ops[k] == 0 {
			missing = append(missing, "ops-"+opNames[k])
		}
	}
	for _, f := range st.fields() {
		if f.required && *f.n == 0 {
			missing = append(missing, f.name)
		}
	}
	return missing
}

func (st *Stats) String() string {
	var b strings.Builder
	b.WriteString("ops:")
	for k := opGet; k <= opIncrement; k++ {
		fmt.Fprintf(&b, " %s=%d", opNames[k], st.Ops[k])
	}
	for i, f := range st.fields() {
		if i%6 == 0 {
			b.WriteString("\n")
		} else {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", f.name, *f.n)
	}
	fmt.Fprintf(&b, "\nvirtual-time=%v", st.VirtualTime)
	return b.String()
}

// cause is what made the simulator call a proposer, for counting reads.
type cause uint8

const (
	causeClient cause = iota + 1
	causeCancel
	causeReply
	causeReadReply
	causeTimer
	causeReadTimer
)

// observe counts what a Ready shows and forgets the requests it answers,
// as soon as the proposer hands the Ready over.
func (s *sim) observe(n *node, rd protocol.Ready, c cause) {
	var last protocol.Message
	for i, m := range rd.Messages {
		if i > 0 && m.Kind == last.Kind && m.Key == last.Key && m.Ballot == last.Ballot {
			continue // the same attempt, to another acceptor
		}
		last = m
		switch m.Kind {
		case protocol.MsgPrepare:
			s.stats.Prepares++
		case protocol.MsgAccept:
			s.observeAccept(n, m)
		}
	}
	for _, r := range rd.Results {
		if _, ok := n.pending[r.ID]; !ok {
			s.fail("sim: node %d answers request %d, which it was not asked or answered already", n.id, r.ID)
			return
		}
		if errors.Is(r.Err, protocol.ErrSlowRead) {
			continue // the request goes on as a Read (clientResult)
		}
		delete(n.pending, r.ID)
		if o := s.w.byReq[r.ID]; o != nil && o.in.kind == opGet && r.Err == nil {
			if c == causeReadReply {
				s.stats.FastReads++
			} else {
				s.stats.SlowReads++
			}
		}
	}
}

func (s *sim) observeAccept(n *node, m protocol.Message) {
	s.stats.Accepts++
	if m.Ballot == n.lastNext[m.Key] {
		s.stats.OneRoundTrip++
	}
	if s.computing[m.Key] > 1 {
		s.stats.Composed++
	}
	n.lastNext[m.Key] = m.Next
}
