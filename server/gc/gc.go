package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/storage"
)

// Deletion GC (PROTOCOL.md §9).
//
// A delete leaves a tombstone; the Runner removes it later. Its work list is a
// queue persisted in the node's store (storage.GCStore): a delete that
// succeeded on this node's proposer enqueues its key (Enqueue, through
// proposer.Config.Deleted), and a sweep of the local store enqueues every
// tombstone it finds, for the enqueues a crash lost between a delete's
// commit and the queue's write. An item leaves the queue only once step 4
// has finished for it on every acceptor, so a crash at any point repeats
// at worst a round, and every step is idempotent:
//
//  1. ProposeGC on this node's proposer: the identity change accepted by
//     every acceptor. A key that holds a live value again is done.
//  2. Forget on every proposer, for all the round's tombstones at once; each
//     returns its new age, persisted.
//  3. Fence on every acceptor with those ages, persisted.
//  4. Collect on every acceptor: remove each register that still holds
//     its tombstone under the step-1 ballot.
//
// Each step starts only once the previous one finished everywhere. A round
// that cannot reach every node fails and is retried after a backoff (the
// items stay queued): GC waits while any node is down. Retrying from step 1
// is safe after any partial round: a removed register shows as absent, a
// kept tombstone wins the next step 1 by its ballot, and a fresh write
// since makes the key live (done) or is a newer tombstone under a newer
// ballot.
//
// Several runners may GC one key at once (two nodes' queues, a sweep and a
// delete): their step-1 ballots differ, and each step 4 removes only the
// register holding its own ballot, so the loser finds "something else" and
// is done.
//
// The sweep covers every tombstone without every node doing all the work:
// a runner queues at once the tombstones it finds whose key's home (Home
// among Peers.Proposers) is its own node, the runner most deletes of the
// key went through. Those of other homes it keeps in memory for
// OrphanDelay, then reads its register again and queues the key only if it
// still holds a tombstone. The home's runner has collected it meanwhile,
// unless the home never knew of it: an accept quorum need not include the
// home, so its own store may lack the tombstone, and a crash or a full feed
// may have lost its enqueue. Such orphans were left forever when each
// sweep queued only its own homes' tombstones. A restart forgets the
// waiting orphans; the sweep at start finds them again.

// Peers reaches the proposers and acceptors of the cluster for steps 2 to
// 4. The in-process implementation is LocalGC; a networked node supplies
// remote calls. Every method fails (and the round is retried) when the node
// cannot be reached or has stopped.
type Peers interface {
	// Proposers lists every node whose proposer may propose; Acceptors every
	// acceptor of the configuration in use.
	Proposers() []protocol.NodeID
	Acceptors() []protocol.NodeID
	// Forget runs Proposer.Forget on node id.
	Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (age uint64, err error)
	// Fence runs Acceptor.Fence on node id; nil ages is a reachability probe.
	Fence(ctx context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error
	// Collect runs Acceptor.Collect on node id.
	Collect(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (done []bool, err error)
}

// Writer runs step 1 on the runner's own node: a *Node is one.
type Writer interface {
	ProposeGC(ctx context.Context, keys []string) []protocol.Result
}

// Config configures a GC runner. Zero values mean the defaults.
type Config struct {
	// ID is the node the runner belongs to. Its sweep queues at once the
	// tombstones whose key's home (Home among Peers.Proposers) is ID.
	ID protocol.NodeID
	// BatchKeys is the number of keys one round collects (default 1024).
	BatchKeys int
	// RoundTimeout bounds one round (default 10s).
	RoundTimeout time.Duration
	// RetryBase and RetryMax bound the jittered exponential delay after a
	// round that did not finish every key (defaults 100ms and 5s).
	RetryBase time.Duration
	RetryMax  time.Duration
	// SweepInterval is the time between sweeps of the local store, the
	// first at start (default 1h; -1: never).
	SweepInterval time.Duration
	// Delay is how long a key enqueued by a delete waits before GC takes
	// it (default 1s). Not for safety: a change of the key in flight on a
	// proposer when GC reaches it ends with an unknown outcome (see
	// protocol.Proposer.Forget), so a key deleted and at once re-created
	// is left alone for a moment. Keys found by a sweep or after a
	// restart do not wait.
	Delay time.Duration
	// OrphanDelay is how long a tombstone a sweep found, of a key homed on
	// another node, waits before this runner queues it, if the register
	// still holds a tombstone then (default 10m). Not for safety: several
	// runners may GC a key at once.
	OrphanDelay time.Duration
	// MaxOrphans bounds the tombstones of other homes waiting in memory
	// (default 1<<20); a sweep that finds more leaves them to the next.
	MaxOrphans int
	// MaxFeedItems bounds the enqueues waiting to be written (default 8192);
	// beyond it they are dropped and left to the sweep.
	MaxFeedItems int
	// RandSeed seeds the retry jitter; zero picks a seed from the clock.
	RandSeed uint64
	// Idempotency is the window of exactly-once writes (zero:
	// kv.DefaultIdempotency): a tombstone whose request table may still
	// be retried against is kept (protocol.RequestsHeld) and taken again
	// once it may go.
	Idempotency kv.Idempotency
}

// MaxDuration bounds every duration of Config: a longer one is a mistake
// in its unit, not a tuning.
const MaxDuration = 24 * time.Hour

// DefaultConfig returns the defaults of every tunable field (ID and
// RandSeed are the caller's). A zero field of a Config given to New takes
// its value from here.
func DefaultConfig() Config {
	return Config{
		BatchKeys:     1024,
		RoundTimeout:  10 * time.Second,
		RetryBase:     100 * time.Millisecond,
		RetryMax:      5 * time.Second,
		SweepInterval: time.Hour,
		Delay:         time.Second,
		OrphanDelay:   10 * time.Minute,
		MaxOrphans:    1 << 20,
		MaxFeedItems:  8192,
	}
}

func (c *Config) validate() error {
	if c.Idempotency == (kv.Idempotency{}) {
		c.Idempotency = kv.DefaultIdempotency()
	}
	if err := c.Idempotency.Validate(); err != nil {
		return fmt.Errorf("caspaxos/gc: %w", err)
	}
	if c.ID == 0 {
		return errors.New("caspaxos/gc: GC runner ID must not be 0")
	}
	if c.BatchKeys < 0 || c.MaxFeedItems < 0 || c.MaxOrphans < 0 {
		return errors.New("caspaxos/gc: BatchKeys, MaxFeedItems and MaxOrphans must not be negative")
	}
	def := DefaultConfig()
	if c.MaxOrphans == 0 {
		c.MaxOrphans = def.MaxOrphans
	}
	if c.BatchKeys == 0 {
		c.BatchKeys = def.BatchKeys
	}
	if c.MaxFeedItems == 0 {
		c.MaxFeedItems = def.MaxFeedItems
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"RoundTimeout", &c.RoundTimeout, def.RoundTimeout},
		{"RetryBase", &c.RetryBase, def.RetryBase},
		{"RetryMax", &c.RetryMax, def.RetryMax},
		{"SweepInterval", &c.SweepInterval, def.SweepInterval},
		{"Delay", &c.Delay, def.Delay},
		{"OrphanDelay", &c.OrphanDelay, def.OrphanDelay},
	}
	for _, d := range durations {
		if *d.d == -1 && d.name == "SweepInterval" {
			continue
		}
		if *d.d < 0 || *d.d > MaxDuration {
			return fmt.Errorf("caspaxos/gc: %s is %v; it must be between 0 (default %v) and %v", d.name, *d.d, d.def, MaxDuration)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	if c.RetryMax < c.RetryBase {
		return fmt.Errorf("caspaxos/gc: RetryMax %v is below RetryBase %v", c.RetryMax, c.RetryBase)
	}
	return nil
}

// Runner is one node's deletion GC runner: it writes enqueued keys to the
// persisted queue, sweeps the local store, and runs rounds over the queue.
type Runner struct {
	cfg   Config
	store storage.Store
	w     Writer
	peers Peers
	log   *slog.Logger
	rng   *rand.Rand

	feed  chan storage.GCItem
	wake  chan struct{} // buffered 1: the queue may have new items
	stop  chan struct{}
	once  sync.Once
	start sync.Once
	wg    sync.WaitGroup

	mu    sync.Mutex
	young map[string]time.Time // keys enqueued by deletes less than Delay ago
	prune time.Time            // when young was last pruned

	// orphans are the tombstones of other homes the sweeps found, waiting
	// for OrphanDelay in the order found, each key once (waiting); run
	// goroutine only.
	orphans []orphanBatch
	waiting map[string]bool

	stats counters
}

// New returns a runner over store (the node's, for its queue and the
// sweep). It starts nothing until Start; Enqueue may be called before.
func New(cfg Config, store storage.Store, w Writer, peers Peers, log *slog.Logger) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil || w == nil || peers == nil || log == nil {
		return nil, errors.New("caspaxos/gc: New needs a store, a writer, peers and a logger")
	}
	seed := cfg.RandSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &Runner{
		cfg:     cfg,
		store:   store,
		w:       w,
		peers:   peers,
		log:     log.With(slog.String("component", "gc")),
		rng:     rand.New(rand.NewPCG(seed, uint64(cfg.ID))),
		feed:    make(chan storage.GCItem, cfg.MaxFeedItems),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		young:   make(map[string]time.Time),
		waiting: make(map[string]bool),
	}, nil
}

// Enqueue queues key, deleted at version, for GC. It never blocks: when
// the feed is full the key is dropped, and the next sweep finds it.
func (g *Runner) Enqueue(key string, version uint64) {
	select {
	case g.feed <- storage.GCItem{Key: key, Version: version}:
	default:
		g.stats.dropped.Add(1)
	}
}

// Start starts the runner's goroutines; Stop ends them.
func (g *Runner) Start() {
	g.start.Do(func() {
		g.wg.Add(2)
		go g.feeder()
		go g.run()
	})
}

// Stop ends the runner and waits for its goroutines. A round in progress
// is abandoned; its items stay queued.
func (g *Runner) Stop() {
	g.once.Do(func() { close(g.stop) })
	g.wg.Wait()
}

// feeder writes enqueued items to the persisted queue, many per write.
func (g *Runner) feeder() {
	defer g.wg.Done()
	for {
		var items []storage.GCItem
		select {
		case it := <-g.feed:
			items = append(items, it)
		case <-g.stop:
			return
		}
	drain:
		for len(items) < g.cfg.BatchKeys {
			select {
			case it := <-g.feed:
				items = append(items, it)
			default:
				break drain
			}
		}
		g.mu.Lock()
		now := time.Now()
		for _, it := range items {
			g.young[it.Key] = now
		}
		g.mu.Unlock()
		if err := g.store.QueueGC(items); err != nil {
			g.stats.dropped.Add(uint64(len(items)))
			g.log.Warn("could not queue deleted keys for GC; the next sweep finds them", slog.Any("error", err))
			continue
		}
		g.signal()
	}
}

func (g *Runner) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// run sweeps and runs rounds until Stop.
func (g *Runner) run() {
	defer g.wg.Done()
	var nextSweep time.Time // zero: sweep now
	cursor, retry := "", 0
	for {
		if g.cfg.SweepInterval > 0 && !time.Now().Before(nextSweep) {
			if err := g.sweep(); err != nil {
				g.log.Warn("GC sweep failed", slog.Any("error", err))
			}
			nextSweep = time.Now().Add(g.cfg.SweepInterval)
		}
		if err := g.adoptOrphans(); err != nil {
			g.log.Warn("could not queue the tombstones of other homes for GC; the next sweep finds them", slog.Any("error", err))
		}
		items, err := g.store.GCQueue(cursor, g.cfg.BatchKeys)
		switch {
		case err != nil:
			g.log.Warn("could not read the GC queue", slog.Any("error", err))
		case len(items) == 0 && cursor == "":
			// Nothing queued: wait for work.
			if !g.wait(nextSweep, 0) {
				return
			}
			continue
		case len(items) == 0:
			cursor = ""
			continue
		default:
			err = g.round(items)
		}
		if len(items) < g.cfg.BatchKeys {
			cursor = ""
		} else {
			cursor = items[len(items)-1].Key + "\x00"
		}
		if err == nil {
			retry = 0
			continue
		}
		if errors.Is(err, errYoung) {
			if !g.wait(nextSweep, g.cfg.Delay) {
				return
			}
			continue
		}
		retry++
		g.stats.failed.Add(1)
		g.log.Debug("GC round did not finish; retrying later", slog.Int("retry", retry), slog.Any("error", err))
		if !g.wait(nextSweep, server.Backoff(g.cfg.RetryBase, g.cfg.RetryMax, retry, g.rng)) {
			return
		}
	}
}

// wait waits for new work (when delay is 0), the delay, or the next sweep.
// It reports false once Stop was called.
func (g *Runner) wait(nextSweep time.Time, delay time.Duration) bool {
	var wake <-chan struct{}
	if delay == 0 {
		wake = g.wake
	}
	d, timed := delay, delay > 0
	at := func(t time.Time) {
		if s := max(time.Until(t), 0); !timed || s < d {
			d, timed = s, true
		}
	}
	if g.cfg.SweepInterval > 0 {
		at(nextSweep)
	}
	if len(g.orphans) > 0 {
		at(g.orphans[0].due)
	}
	var timeout <-chan time.Time
	if timed {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-g.stop:
		return false
	case <-wake:
	case <-timeout:
	}
	return true
}

// sweep enqueues every tombstone of the local store whose key's home is
// this node, and keeps the others as orphans for OrphanDelay.
func (g *Runner) sweep() error {
	const page = 1 << 14 // registers per Scan, so that no iterator lives long
	start, tombstones := "", uint64(0)
	for {
		var items, orphans []storage.GCItem
		homes := g.peers.Proposers()
		next, more, n := "", false, 0
		err := g.store.Scan(start, func(key string, reg protocol.Register) bool {
			if n == page {
				next, more = key, true
				return false
			}
			n++
			if !reg.State.Deleted {
				return true
			}
			tombstones++
			it := storage.GCItem{Key: key, Version: reg.State.Version}
			switch {
			case server.Home(key, homes) == g.cfg.ID:
				items = append(items, it)
			case !g.waiting[key] && len(g.waiting) < g.cfg.MaxOrphans:
				g.waiting[key] = true
				orphans = append(orphans, it)
			}
			return true
		})
		if len(orphans) > 0 {
			// Even when the page fails below: they wait, then are read again.
			g.orphans = append(g.orphans, orphanBatch{due: time.Now().Add(g.cfg.OrphanDelay), items: orphans})
		}
		if err == nil {
			err = g.store.QueueGC(items)
		}
		if err != nil {
			return err
		}
		g.stats.swept.Add(uint64(len(items)))
		if len(items) > 0 {
			g.signal()
		}
		select {
		case <-g.stop:
			return nil
		default:
		}
		if !more {
			g.stats.tombstones.Store(tombstones)
			g.stats.sweeps.Add(1)
			return nil
		}
		start = next
	}
}

// orphanBatch is the tombstones of other homes one sweep page found.
type orphanBatch struct {
	due   time.Time
	items []storage.GCItem
}

// adoptOrphans queues the orphans that waited OrphanDelay and whose
// register still holds a tombstone here: their home did not collect them.
func (g *Runner) adoptOrphans() error {
	now := time.Now()
	for len(g.orphans) > 0 && !now.Before(g.orphans[0].due) {
		b := g.orphans[0]
		var items []storage.GCItem
		for _, it := range b.items {
			reg, err := g.store.Get(it.Key)
			if err != nil {
				return err
			}
			if reg.State.Deleted {
				items = append(items, storage.GCItem{Key: it.Key, Version: reg.State.Version})
			}
		}
		if err := g.store.QueueGC(items); err != nil {
			return err
		}
		g.orphans[0] = orphanBatch{}
		g.orphans = g.orphans[1:]
		for _, it := range b.items {
			delete(g.waiting, it.Key)
		}
		g.stats.adopted.Add(uint64(len(items)))
		if len(items) > 0 {
			g.signal()
		}
	}
	return nil
}

// errIncomplete: a round left keys queued (a key busy, a step 1 that lost
// to a concurrent change); they are retried after a backoff.
var errIncomplete = errors.New("caspaxos/gc: GC round left keys for later")

// errYoung: every item of the page was enqueued less than Delay ago.
var errYoung = errors.New("caspaxos/gc: GC items too young")

// ripe returns the items whose keys were not enqueued by a delete less than
// Delay ago, and forgets the keys that have waited long enough.
func (g *Runner) ripe(items []storage.GCItem) []storage.GCItem {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if now.Sub(g.prune) >= g.cfg.Delay {
		g.prune = now
		for k, at := range g.young {
			if now.Sub(at) >= g.cfg.Delay {
				delete(g.young, k)
			}
		}
	}
	var out []storage.GCItem
	for _, it := range items {
		if at, ok := g.young[it.Key]; !ok || now.Sub(at) >= g.cfg.Delay {
			out = append(out, it)
		}
	}
	return out
}

// hold keeps key, a tombstone whose request IDs may still be retried
// against, out of rounds until it may go: it waits as a young key does,
// until its newest record is window + skew old.
func (g *Runner) hold(key string, s protocol.State, now time.Time) {
	t, err := protocol.DecodeRequests(s.Requests)
	until := now.Add(g.cfg.Idempotency.Window)
	if err == nil {
		w := g.cfg.Idempotency
		until = time.UnixMilli(t.Newest()).Add(w.Window + w.MaxClockSkew + time.Millisecond)
	}
	g.mu.Lock()
	g.young[key] = until.Add(-g.cfg.Delay)
	g.mu.Unlock()
	g.stats.held.Add(1)
}

// round runs steps 1 to 4 for the keys of items and dequeues the items of
// the keys it finished.
func (g *Runner) round(items []storage.GCItem) error {
	if items = g.ripe(items); len(items) == 0 {
		return errYoung
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RoundTimeout)
	defer cancel()
	go func() {
		select {
		case <-g.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	g.stats.rounds.Add(1)
	// A cheap probe first: with an acceptor down step 1 cannot finish, and
	// trying would only load the others.
	if err := g.eachAcceptor(ctx, func(id protocol.NodeID) error { return g.peers.Fence(ctx, id, nil) }); err != nil {
		return err
	}
	keys := distinctKeys(items)
	done := make(map[string]bool, len(keys))
	var tombs []protocol.Tombstone
	results := g.w.ProposeGC(ctx, keys)
	// After step 1, before step 2 (protocol.RequestsHeld says why).
	now := time.Now()
	window := g.cfg.Idempotency.RequestWindow()
	for i, r := range results {
		switch {
		case r.Err != nil:
		case r.State.Exists():
			done[keys[i]] = true // live again: nothing to collect
		case protocol.RequestsHeld(r.State, now.UnixMilli(), window):
			g.hold(keys[i], r.State, now)
		default:
			tombs = append(tombs, protocol.Tombstone{Key: keys[i], Ballot: r.Ballot, Version: r.State.Version, Promise: r.Promise})
		}
	}
	err := g.collect(ctx, tombs, done)
	var finished []storage.GCItem
	for _, it := range items {
		if done[it.Key] {
			finished = append(finished, it)
		}
	}
	if derr := g.store.DequeueGC(finished); derr != nil {
		return errors.Join(err, derr)
	}
	g.stats.collected.Add(uint64(len(done)))
	if err == nil && len(done) < len(keys) {
		err = errIncomplete
	}
	return err
}

// collect runs steps 2 to 4 for tombs and marks done the keys finished on
// every acceptor.
func (g *Runner) collect(ctx context.Context, tombs []protocol.Tombstone, done map[string]bool) error {
	if len(tombs) == 0 {
		return nil
	}
	var mu sync.Mutex
	ages := make(map[protocol.NodeID]uint64)
	err := g.each(ctx, g.peers.Proposers(), func(id protocol.NodeID) error {
		age, err := g.peers.Forget(ctx, id, tombs)
		mu.Lock()
		ages[id] = age
		mu.Unlock()
		return err
	})
	if err != nil {
		return fmt.Errorf("step 2: %w", err)
	}
	if err := g.eachAcceptor(ctx, func(id protocol.NodeID) error { return g.peers.Fence(ctx, id, ages) }); err != nil {
		return fmt.Errorf("step 3: %w", err)
	}
	everywhere := make([]int, len(tombs))
	err = g.eachAcceptor(ctx, func(id protocol.NodeID) error {
		ok, err := g.peers.Collect(ctx, id, tombs)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i, d := range ok {
			if d {
				everywhere[i]++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	n := len(g.peers.Acceptors())
	for i, t := range tombs {
		if everywhere[i] == n {
			done[t.Key] = true
		}
	}
	return nil
}

func (g *Runner) eachAcceptor(ctx context.Context, fn func(id protocol.NodeID) error) error {
	return g.each(ctx, g.peers.Acceptors(), fn)
}

// each runs fn on every node at once and returns the errors, each naming
// its node.
func (g *Runner) each(ctx context.Context, ids []protocol.NodeID, fn func(id protocol.NodeID) error) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(id); err != nil {
				errs[i] = fmt.Errorf("node %d: %w", id, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

func distinctKeys(items []storage.GCItem) []string {
	var keys []string
	for i, it := range items {
		if i == 0 || it.Key != items[i-1].Key { // items are ordered by key
			keys = append(keys, it.Key)
		}
	}
	return keys
}

// Stats counts a runner's work since it started.
type Stats struct {
	// Rounds is the number of rounds run, Failed those that left keys queued.
	Rounds uint64
	Failed uint64
	// Collected counts keys finished: removed from every acceptor, or
	// found live again.
	Collected uint64
	// Swept counts tombstones the sweeps queued at once (their key's home
	// is this node); Adopted those of other homes queued after
	// OrphanDelay because they were still there; Dropped the enqueues
	// lost to a full feed or a failed queue write (the sweep finds them).
	Swept   uint64
	Adopted uint64
	Dropped uint64
	// Sweeps counts complete sweeps; Tombstones is the number of
	// tombstones the last one found in the local store (not a counter).
	Sweeps     uint64
	Tombstones uint64
	// Held counts tombstones a round kept because their request IDs may
	// still be retried against (exactly-once writes).
	Held uint64
}

type counters struct {
	rounds, failed, collected, swept, adopted, dropped, sweeps, tombstones, held atomic.Uint64
}

// Queued counts the items of the persisted queue, up to limit (a key
// queued under several versions may count once when a page ends on it).
func (g *Runner) Queued(limit int) (int, error) {
	const page = 4096
	n, start := 0, ""
	for n < limit {
		want := min(page, limit-n)
		items, err := g.store.GCQueue(start, want)
		if err != nil {
			return n, err
		}
		n += len(items)
		if len(items) < want {
			break
		}
		start = items[len(items)-1].Key + "\x00"
	}
	return n, nil
}

// Stats returns the runner's counters.
func (g *Runner) Stats() Stats {
	s := &g.stats
	return Stats{
		Held:       s.held.Load(),
		Rounds:     s.rounds.Load(),
		Failed:     s.failed.Load(),
		Collected:  s.collected.Load(),
		Swept:      s.swept.Load(),
		Adopted:    s.adopted.Load(),
		Sweeps:     s.sweeps.Load(),
		Tombstones: s.tombstones.Load(),
		Dropped:    s.dropped.Load(),
	}
}
