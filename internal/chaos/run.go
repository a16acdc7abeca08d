package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/server/acceptor"
)

// Options configure one run.
type Options struct {
	// Seed names the run: its plan and every random choice follow from it.
	Seed uint64
	// Length is how long clients run and faults happen (default
	// DefaultLength).
	Length time.Duration
	// Variant switches on deliberately broken production behaviour
	// (negative tests only).
	Variant Variant
	// Kind forces the plan's kind (default: the variant's, else the one
	// the seed draws).
	Kind PlanKind
	// CheckTimeout bounds Porcupine's search (default 60s); a search that
	// does not finish counts as a failure.
	CheckTimeout time.Duration
	// Log receives the nodes' logs (default: discarded).
	Log *slog.Logger
}

// DefaultLength is a run's default length.
const DefaultLength = 2 * time.Second

// Variant is a deliberately broken production component, switched on
// through the components' own test switches. The zero Variant is the code
// that ships.
type Variant struct {
	// Name appears in failures and in the replay command.
	Name string
	// Kind is the plan kind that exposes the variant (0: the seed's).
	Kind PlanKind
	// ReplyBeforeSync: acceptor services release replies before the write
	// they depend on is synced (acceptor.Config.Bugs.ReplyBeforeSync).
	ReplyBeforeSync bool
	// NoAgeFence: acceptor services store GC's age fences but never
	// refuse a message for its age (acceptor.Config.Bugs.NoAgeFence).
	NoAgeFence bool
	// NoCatchUp: the membership controller skips the catch-up
	// (membership.ControllerConfig.Bugs.NoCatchUp).
	NoCatchUp bool
	// RestartWithoutFloor: acceptor services start with no floor
	// (acceptor.Config.Bugs.RestartWithoutFloor), so that a crash that
	// loses an unsynced promise lets them break it (PROTOCOL.md §12).
	RestartWithoutFloor bool
	// ListTrustOneReply: every node's Lister merges one acceptor's scan
	// alone (list.Config.Bugs.TrustOneReply).
	ListTrustOneReply bool
	// WatchRawAccepts: every node's watch hub delivers hints straight
	// from one acceptor's accept (watch.Config.Bugs.RawAccepts).
	WatchRawAccepts bool
}

// acceptor applies the variant to an acceptor service's configuration.
func (v Variant) acceptor(cfg *acceptor.Config) {
	cfg.Bugs.ReplyBeforeSync = v.ReplyBeforeSync
	cfg.Bugs.NoAgeFence = v.NoAgeFence
	cfg.Bugs.RestartWithoutFloor = v.RestartWithoutFloor
}

// listStats counts a run's listing pages: asked, ended well, items
// checked as reads, and (page, key) pairs found live throughout a page
// and so checked for completeness.
type listStats struct {
	Pages, PagesOK, Items, LiveChecked int
}

// Stats counts what a run did.
type Stats struct {
	Ops, OK, Refused, Unknown, NotApplied int
	Sent, Dropped, Duplicated, Delayed    uint64
	CutDrops, Replayed                    uint64
	Crashes, Restarts, SyncFailures       int
	FloorRefused, UnsyncedApplies         uint64
	GCCollects                            uint64
	// Collected counts registers GC removed, Fenced requests an age
	// fence refused (a stale message GC would otherwise have let in).
	Collected, Fenced uint64
	Partitions        int
	// Changes counts membership changes that ended, LateChanges those
	// that ended only after the clients stopped.
	Changes, LateChanges int
	List                 listStats
	// WatchEvents counts watchers' deliveries checked as reads,
	// WatchersFinal the watchers checked for the last state of every key.
	WatchEvents, WatchersFinal int
}

func (s Stats) String() string {
	return fmt.Sprintf("ops %d in history (ok %d, refused %d, unknown %d; not applied %d); messages sent %d, dropped %d, duplicated %d, delayed %d, cut %d, replayed after a restart %d; crashes %d (sync failures %d), restarts %d, partitions %d, membership changes %d (%d after the clients); floor refusals %d, unsynced writes %d; GC collect calls %d, registers collected %d, requests fenced %d",
		s.Ops, s.OK, s.Refused, s.Unknown, s.NotApplied, s.Sent, s.Dropped, s.Duplicated, s.Delayed, s.CutDrops, s.Replayed,
		s.Crashes, s.SyncFailures, s.Restarts, s.Partitions, s.Changes, s.LateChanges, s.FloorRefused, s.UnsyncedApplies,
		s.GCCollects, s.Collected, s.Fenced) +
		fmt.Sprintf("; list pages %d (%d ended well), items read %d, live keys checked %d",
			s.List.Pages, s.List.PagesOK, s.List.Items, s.List.LiveChecked) +
		fmt.Sprintf("; watch deliveries read %d, watchers checked at the end %d", s.WatchEvents, s.WatchersFinal)
}

// Report is a run that passed every check.
type Report struct {
	Seed  uint64
	Plan  Plan
	Stats Stats
}

// Failure is a run that broke linearizability or an invariant. Its Error
// text has the seed, the plan and the command that replays it.
type Failure struct {
	Seed    uint64
	Variant string
	Length  time.Duration
	Plan    Plan
	Stats   Stats
	Reasons []string
}

// Replay is the command that reruns the failing seed.
func (f *Failure) Replay() string {
	cmd := fmt.Sprintf("go test ./internal/chaos -run TestReplay -chaos-seed %d -v", f.Seed)
	if f.Variant != "" {
		cmd += " -chaos-variant " + f.Variant
	}
	cmd += " -chaos-plan " + f.Plan.Kind.String()
	if f.Length != DefaultLength {
		cmd += fmt.Sprintf(" -chaos-length %v", f.Length)
	}
	return cmd
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "caspaxos/chaos: seed %d", f.Seed)
	if f.Variant != "" {
		fmt.Fprintf(&b, " (variant %s)", f.Variant)
	}
	fmt.Fprintf(&b, " failed:\n")
	for _, r := range f.Reasons {
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(r, "\n", "\n  "))
	}
	fmt.Fprintf(&b, "stats: %s\nplan: %s", f.Stats, f.Plan)
	fmt.Fprintf(&b, "replay: %s", f.Replay())
	return b.String()
}

// Run runs one seed: it starts the cluster, runs the clients while the
// plan's faults happen, stops everything, and checks the invariants and
// every key's history. It returns a *Failure if a check fails, another
// error if the harness itself could not run.
func Run(opts Options) (*Report, error) {
	if opts.Length == 0 {
		opts.Length = DefaultLength
	}
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 60 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Kind == 0 {
		opts.Kind = opts.Variant.Kind
	}
	plan := drawPlan(opts.Seed, opts.Length, opts.Kind)
	inv := newInvariants()
	net := newNetwork(plan, opts.Seed, inv)
	h := &history{start: time.Now()}
	c := newCluster(plan, opts.Seed, opts.Variant, net, h, opts.Log)
	for _, id := range c.ids() {
		if !c.members[id].active {
			continue // a node to be added: started by its AddNode
		}
		if err := c.start(c.members[id]); err != nil {
			return nil, fmt.Errorf("caspaxos/chaos: seed %d: %w", opts.Seed, err)
		}
	}
	if plan.Grow > 0 {
		if err := c.startController(); err != nil {
			return nil, fmt.Errorf("caspaxos/chaos: seed %d: %w", opts.Seed, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), plan.Length)
	defer cancel()
	var wg sync.WaitGroup
	for i := range plan.Clients {
		cl := &client{id: i, rng: rand.New(rand.NewPCG(opts.Seed, uint64(i))),
			lrng: rand.New(rand.NewPCG(opts.Seed, 0x6c697374+uint64(i))), c: c, h: h, seen: map[string]uint64{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(ctx)
		}()
	}
	partitions := runFaults(ctx, c, h.start)
	wg.Wait()
	net.setCut(nil)
	for _, id := range c.ids() {
		c.reapFailed()
		c.restart(c.members[id]) // what is down comes back, so that a change in progress can end
	}
	c.finishChanges(changeLimit)
	if c.changes != nil {
		c.changes.ctl.Stop()
	}
	watchersFinal := c.checkWatchFinal()
	crashes := c.crashes
	final := c.members[1].state.Load().Membership.Config
	disks, diskErr := c.shutdown(final.PrepareSet)
	net.shutdown()

	st := Stats{
		Ops: len(h.ops), OK: h.ok, Refused: h.refused, Unknown: h.unknown, NotApplied: h.notApplied,
		Sent: net.sent.Load(), Dropped: net.dropped.Load(), Duplicated: net.duplicated.Load(),
		Delayed: net.delayed.Load(), CutDrops: net.cutDrops.Load(), Replayed: net.replayed.Load(),
		GCCollects: h.gcs.Load(), Collected: c.collected, Fenced: c.fenced,
		Crashes: crashes, Restarts: c.restarts, SyncFailures: c.syncFailures, Partitions: partitions,
		FloorRefused: c.floorRefused, UnsyncedApplies: c.unsyncedApplies,
		WatchEvents: h.watchEvents, WatchersFinal: watchersFinal,
	}
	if c.changes != nil {
		st.Changes, st.LateChanges = c.changes.ended, c.changes.late
	}
	var reasons []string
	reasons = append(reasons, h.unexpected...)
	listFailures, liveChecked := checkLists(h.pages, h.ops)
	reasons = append(reasons, listFailures...)
	st.List = listStats{Pages: len(h.pages), Items: h.listItems, LiveChecked: liveChecked}
	for _, p := range h.pages {
		if p.done {
			st.List.PagesOK++
		}
	}
	reasons = append(reasons, c.errs...)
	if diskErr != nil {
		reasons = append(reasons, fmt.Sprintf("reading the disks at the end: %v", diskErr))
	}
	inv.mu.Lock()
	collected := make(map[string]bool)
	for _, keys := range inv.collected {
		for k := range keys {
			collected[k] = true
		}
	}
	inv.mu.Unlock()
	inv.checkSurvivors(final, disks, collected)
	reasons = append(reasons, inv.failures()...)
	if err := sim.CheckHistory(h.ops, opts.CheckTimeout); err != nil {
		reasons = append(reasons, err.Error())
	}
	if len(reasons) > 0 {
		return nil, &Failure{Seed: opts.Seed, Variant: opts.Variant.Name, Length: opts.Length, Plan: plan, Stats: st, Reasons: reasons}
	}
	return &Report{Seed: opts.Seed, Plan: plan, Stats: st}, nil
}

// changeLimit bounds how long a membership change may take to end once
// the clients stopped and every fault healed.
const changeLimit = 20 * time.Second

// runFaults carries out the plan's schedule until ctx ends, and restarts
// nodes that stopped themselves after a failed sync. It returns the number
// of partitions made.
func runFaults(ctx context.Context, c *cluster, start time.Time) int {
	const reapEvery = 5 * time.Millisecond
	tick := time.NewTicker(reapEvery)
	defer tick.Stop()
	partitions := 0
	events := c.plan.Events
	for {
		var due <-chan time.Time
		var t *time.Timer
		if len(events) > 0 {
			t = time.NewTimer(time.Until(start.Add(events[0].At)))
			due = t.C
		}
		fired := false
		select {
		case <-ctx.Done():
		case <-tick.C:
			c.reapFailed()
			c.nextChange()
		case <-due:
			fired = true
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return partitions
		}
		if !fired {
			continue
		}
		e := events[0]
		events = events[1:]
		m := c.members[e.Node]
		switch e.Kind {
		case Crash:
			c.crash(m, c.plan.UnsyncedPercent)
		case FailSync:
			if m.inc != nil {
				m.fail.armed.Store(true)
			}
		case Restart:
			c.restart(m)
		case Partition:
			partitions++
			c.net.setCut(e.Cut)
		case Heal:
			c.net.setCut(nil)
		case AddNode, RemoveNode:
			c.change(e)
		}
	}
}
