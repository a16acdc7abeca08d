package sim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Options configure one run.
type Options struct {
	// Seed names the run: the plan, the workload and every fault follow from it.
	Seed uint64
	// Ops is how many client operations to issue (default 10000).
	Ops int
	// Nodes is 3 or 5; 0 lets the seed choose.
	Nodes int
	// Variant switches on deliberately broken behaviour (negative tests only).
	Variant Variant
	// Tweak, if set, adjusts the plan drawn from the seed.
	Tweak func(*Plan)
	// CheckTimeout bounds Porcupine's search (wall time; default 60s). A
	// search that does not finish in time is a failure, not a pass.
	CheckTimeout time.Duration
	// NoRetire records every unknown outcome as open until the end of time
	// instead of closing it once it can no longer take effect (see
	// retirement). Slower; for cross-checking the retirement rule.
	NoRetire bool
	// Trace, if set, receives one line per event and client operation.
	Trace io.Writer
}

// Variant is a deliberately broken driver or core, for negative tests.
// The zero Variant is correct behaviour.
type Variant struct {
	// Name appears in failure reports and in the replay command.
	Name string
	// ReplyBeforeSync lets acceptor replies leave before the write they
	// depend on is synced (a broken acceptor driver).
	ReplyBeforeSync bool
	// Bugs is handed to every proposer.
	Bugs protocol.Bugs
	// NoAgeFence runs deletion GC without the acceptors' age fence (§9 step 3).
	NoAgeFence bool
	// NoCatchUp changes membership without the catch-up step (§8 step 3).
	NoCatchUp bool
	// AmnesiaRestart restarts a node that lost its disk (Plan.DiskLoss)
	// under its old identity, with an empty acceptor, as a server that
	// does not check its data directory's identity would.
	AmnesiaRestart bool
	// NoFloor restarts acceptors without their floor (PROTOCOL.md §12)
	// while their promises are still written without a sync before the
	// reply: a promise lost in a crash can then be broken.
	NoFloor bool
	// JoinWithoutCounter adds a node without moving its proposer's
	// counter up to the members' (protocol.JoinFences.Counter): it
	// may re-create a key deletion GC removed below the removed
	// tombstone's version.
	JoinWithoutCounter bool
	// IDCheckOutside checks a write's request ID outside its change
	// function (idempotent.go): against the issuing node's own acceptor,
	// at issue time.
	IDCheckOutside bool
	// IDTimeAtArrival builds a write's exactly-once change once, at the
	// time its request reached the proposer, instead of at each attempt
	// (protocol.Proposer.ProposeTimed): a retry computed after deletion GC
	// removed the key's request table judges itself inside the window and
	// applies the write again.
	IDTimeAtArrival bool
	// LeaseLocalExpiry makes lease readers decide expiry from their node's
	// clock at read time (lease.go) instead of the committed state.
	LeaseLocalExpiry bool
	// LockTokenNotVersion takes as a hold's token a count of acquires at
	// the answering node, not the lock register's version (lock.go).
	LockTokenNotVersion bool
	// LockBreakLiveLease breaks a lock's hold without reading its lease
	// (lock.go): a break of a live holder.
	LockBreakLiveLease bool
	// LockReleaseAnyHold releases a lock without naming the hold's token
	// (lock.go): a release of an earlier hold, retried or delayed, frees
	// a later hold of the same lease.
	LockReleaseAnyHold bool
	// LeaseUnguardedDelete makes the reaper delete a key its stale index
	// attaches to a lease that ended with a plain delete, without
	// checking that the key is still attached (attached.go).
	LeaseUnguardedDelete bool
	// ListQuorumShortBy takes this many from the quorum of scan replies a
	// listing round waits for and merges with (protocol.MergeList's
	// quorum), down to one: a lister that trusts too few acceptors.
	ListQuorumShortBy int
	// ScanBeforeSync lets an acceptor's scan reply leave before the writes
	// it may show are synced (no scan barrier).
	ScanBeforeSync bool
	// WatchRawAccepts delivers watchers the hints of one acceptor's
	// accepts without the confirming read (watch.go).
	WatchRawAccepts bool
}

// Report describes a run that passed every check.
type Report struct {
	Seed      uint64
	Plan      Plan
	TraceHash uint64
	Stats     Stats
}

// Failure is a run that broke an invariant or linearizability (or a duty
// the simulator checks of itself). Its Error text has everything needed to
// reproduce it.
type Failure struct {
	Seed     uint64
	Variant  string
	Ops      int
	NoRetire bool
	Plan     Plan
	Reason   string
	Tail     []string // the last events before the failure
	Stats    Stats
}

// Replay is the command that reruns the failing seed.
func (f *Failure) Replay() string {
	cmd := fmt.Sprintf("go test ./internal/sim -run TestReplay -seed %d -v", f.Seed)
	if f.Variant != "" {
		cmd += " -variant " + f.Variant
	}
	if f.Ops != defaultOps {
		cmd += fmt.Sprintf(" -ops %d", f.Ops)
	}
	if f.NoRetire {
		cmd += " -no-retire"
	}
	return cmd
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "caspaxos/sim: seed %d", f.Seed)
	if f.Variant != "" {
		fmt.Fprintf(&b, " (variant %s)", f.Variant)
	}
	fmt.Fprintf(&b, ": %s\nplan:\n  %s\n", f.Reason, strings.ReplaceAll(f.Plan.String(), "\n", "\n  "))
	fmt.Fprintf(&b, "last %d events:\n", len(f.Tail))
	for _, l := range f.Tail {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "replay: %s", f.Replay())
	return b.String()
}

// defaultOps is how many operations a run issues unless told otherwise.
const defaultOps = 10000

// maxEventsPerOp bounds a run: a run that needs more events than this per
// operation is stuck (a simulator bug, or a livelock).
const maxEventsPerOp = 2000

// sim is one run. Everything that affects it is in here; nothing is shared
// between runs.
type sim struct {
	opts    Options
	plan    Plan
	rng     *rand.Rand
	now     time.Duration
	agenda  agenda
	free    []*event // events done with, for reuse
	nextSeq uint64
	nodes   []*node
	blocked [][]bool // blocked[a][b]: messages from a to b are dropped
	down    int      // nodes down now
	clients []*client
	keys    []string
	w       workload
	inv     invariants
	ret     retirement
	gc      gcState
	member  memberState
	lists   listState
	watch   watchState
	cfg     protocol.Config // the latest configuration (membership)
	trace   trace
	stats   Stats
	// computing counts change functions run per key during one proposer call.
	computing map[string]int
	failure   *Failure
	// Exactly-once writes (idempotent.go): the clocks' and IDs' PRNG, the
	// last request ID, and per key the version each ID was applied at.
	idrng   *rand.Rand
	nextRID int
	ledger  map[string]map[string]uint64
	lease   leaseState // lease.go
	locks   lockState  // lock.go
}

// Run runs one seed and checks it. It returns a *Failure on a violation.
func Run(opts Options) (Report, error) {
	if opts.Ops == 0 {
		opts.Ops = defaultOps
	}
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 60 * time.Second
	}
	s := newSim(opts)
	s.loop()
	s.settleWatchers()
	if s.failure == nil {
		s.finalChecks()
	}
	rep := Report{Seed: opts.Seed, Plan: s.plan, TraceHash: s.trace.hash, Stats: s.stats}
	if s.failure != nil {
		s.failure.Stats = s.stats
		return rep, s.failure
	}
	return rep, nil
}

// Plan returns the plan a run with these options follows (Run draws the
// same one), so that it can be shown before the run starts.
func (o Options) Plan() Plan {
	_, plan := o.draw()
	return plan
}

// draw seeds the run's one PRNG and draws the plan from it, first.
func (o Options) draw() (*rand.Rand, Plan) {
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	plan := drawPlan(rng, o.Nodes)
	drawIdempotency(o.Seed, &plan)
	drawLeases(o.Seed, &plan)
	drawListing(&plan, o.Seed)
	drawWatching(&plan, o.Seed)
	if o.Tweak != nil {
		o.Tweak(&plan)
	}
	return rng, plan
}

func newSim(opts Options) *sim {
	rng, plan := opts.draw()
	s := &sim{
		opts:      opts,
		plan:      plan,
		rng:       rng,
		trace:     newTrace(),
		computing: make(map[string]int),
	}
	s.w = newWorkload(plan)
	pool := plan.Nodes
	if plan.MemberEvery > 0 {
		pool = 5
	}
	var first []protocol.NodeID
	for i := range plan.Nodes {
		first = append(first, protocol.NodeID(i+1))
	}
	s.cfg = protocol.Majority(1, first...)
	s.inv = newInvariants(pool, s.cfg)
	s.member.removed = make(map[int]bool)
	s.ret = newRetirement()
	for i := range plan.Keys {
		s.keys = append(s.keys, fmt.Sprintf("k%d", i))
	}
	s.blocked = make([][]bool, pool)
	for i := range pool {
		s.blocked[i] = make([]bool, pool)
		s.nodes = append(s.nodes, newNode(i))
	}
	for _, n := range s.nodes {
		if n.idx >= plan.Nodes {
			n.fresh = true // started when a membership change adds it
			continue
		}
		s.restart(n)
	}
	for i := range plan.Clients {
		s.clients = append(s.clients, newClient(i))
		s.schedule(event{kind: evClientNext, client: i}, s.jitter(s.plan.Think))
	}
	s.setClocks()
	s.setLeases()
	s.setLocks()
	s.scheduleFaults()
	s.scheduleGC()
	s.scheduleMembership()
	s.scheduleListers()
	s.scheduleWatchers()
	if plan.Nodes == 3 {
		s.stats.Runs3 = 1
	} else {
		s.stats.Runs5 = 1
	}
	s.tracef("seed %d plan:\n%s", opts.Seed, plan)
	return s
}

func (s *sim) loop() {
	limit := maxEventsPerOp * s.opts.Ops
	for s.failure == nil && len(s.agenda) > 0 && !s.finished() {
		ev := s.agenda.pop()
		s.now = ev.at
		s.trace.record(ev)
		if s.opts.Trace != nil {
			fmt.Fprintf(s.opts.Trace, "%12v  %v\n", s.now, ev)
		}
		s.dispatch(ev)
		*ev = event{}
		s.free = append(s.free, ev)
		s.stats.Events++
		if s.stats.Events > limit {
			s.fail("no progress: %d events for %d operations", s.stats.Events, s.opts.Ops)
		}
	}
	s.stats.VirtualTime = s.now
	if s.failure == nil && !s.finished() {
		s.fail("the agenda ran dry with operations outstanding")
	}
}

func (s *sim) dispatch(ev *event) {
	switch ev.kind {
	case evDeliver:
		s.deliver(ev.msg)
	case evSyncDone:
		s.syncDone(ev)
	case evTimer:
		s.fire(ev)
	case evClientNext:
		s.clientNext(s.clients[ev.client])
	case evDeadline:
		s.deadline(ev)
	case evFaultStart:
		s.faultStart(ev.fault)
	case evFaultEnd:
		s.faultEnd(ev)
	case evGC:
		s.gcTick()
	case evMember:
		s.memberTick()
	case evLease:
		s.leaseTick(ev)
	case evLock:
		s.lockTick(ev)
	case evScan:
		s.scanAt(ev)
	case evScanReply:
		s.scanReply(ev)
	case evListNext:
		s.listNext(s.lists.listers[ev.client])
	case evListDeadline:
		s.listDeadline(ev)
	case evListStep:
		s.listStep(ev)
	case evWatch:
		s.watchEvent(ev.watch)
	}
}

// schedule adds ev to the agenda after delay.
func (s *sim) schedule(ev event, delay time.Duration) {
	var e *event
	if n := len(s.free); n > 0 {
		e, s.free = s.free[n-1], s.free[:n-1]
	} else {
		e = new(event)
	}
	*e = ev
	e.at = s.now + delay
	e.seq = s.nextSeq
	s.nextSeq++
	s.agenda.push(e)
}

// jitter returns a duration drawn uniformly from [d/2, 3d/2].
func (s *sim) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(s.rng.Int64N(int64(d)+1))
}

// chance reports true with probability p.
func (s *sim) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

// fail stops the run; only the first failure counts.
func (s *sim) fail(format string, args ...any) {
	if s.failure != nil {
		return
	}
	s.failure = &Failure{
		Seed:     s.opts.Seed,
		Variant:  s.opts.Variant.Name,
		Ops:      s.opts.Ops,
		NoRetire: s.opts.NoRetire,
		Plan:     s.plan,
		Reason:   fmt.Sprintf("at %v: ", s.now) + fmt.Sprintf(format, args...),
		Tail:     s.trace.tail(),
	}
}

// tracef notes a rare happening in the trace (and the trace writer).
func (s *sim) tracef(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	s.trace.note(s.now, text)
	if s.opts.Trace != nil {
		fmt.Fprintf(s.opts.Trace, "%12v  %s\n", s.now, text)
	}
}
