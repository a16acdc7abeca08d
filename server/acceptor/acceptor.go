package acceptor

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/storage"
)

// The acceptor service: group commit and per-key order.
//
// protocol.Step is the acceptor; this file is its caller and carries the
// duties Step's documentation lists. Each received batch (one server.Transport
// delivery, messages for many keys) is processed by one worker goroutine,
// and many batches are in flight at once so that their writes share fsyncs:
// Store.Apply is durable on return and concurrent Applys share syncs, so a
// batch makes one Apply (two when some of its keys must wait for another
// batch's write, see below), and concurrency between batches groups them.
//
// Registers in flight. Step must see the register the previous Step on the
// key returned, synced or not (duty 1), but Store.Get returns only synced
// data. So the service keeps a slot per key with the newest register, in
// memory, for as long as any batch holding the key is in flight. A batch
// pins the slots of its keys (refs), loads the ones nobody held from the
// store, steps, writes, and unpins. When the last batch unpins a slot, every
// batch that stepped the key has finished its Apply (a batch unpins only
// after its own Applys returned), so the store holds the slot's register:
// the slot may be dropped, and a later load reads the register back. A slot
// is loaded once, by the batch that created it, while the others that
// pinned it meanwhile wait for the load; nobody steps a key before its slot
// is loaded.
//
// Cached registers. A slot nobody holds is not dropped at once: it stays
// in the map, on an LRU list bounded by CacheBytes, so that the next message
// of a hot key (the accept after a promise, the next one-round-trip accept)
// finds its register without a Store.Get. Its register equals what the
// store holds, by the argument above, as long as every write of the store
// goes through this service: deletion GC's removals do (Collect, in
// acceptor_gc.go). A slot whose load failed is never kept.
//
// Stepping. A batch steps all its messages under one mutex (mu), in message
// order. That makes the steps of a batch atomic with respect to other
// batches, which orders batches totally ("stepped before"), and makes the
// per-key order of Steps the order in which batches took mu. Holding mu only
// for map lookups and pure Steps keeps it short; no I/O happens under it.
//
// Writes of one key must reach the store in step order. If batch A stepped
// key k before batch B, and both write k, B's register derives from A's. Were
// B's Apply to land first, A's would then overwrite k with an older register
// (a lower promise, say) after B had already answered from the newer one.
// Store does not order concurrent Applys, so B must not start writing k until
// A's Apply has returned. Each slot remembers the commit (one Apply) that last
// wrote it; a batch that writes a key whose last commit belongs to another
// batch and is still in flight waits for it first. Those waits point only
// from a batch to batches that stepped before it, so they cannot form a
// cycle and never deadlock.
//
// Keys do not wait on keys. Waiting for another batch's Apply would delay
// every key of the waiting batch, so a batch splits its writes in two
// commits: "free" entries, whose keys have no unfinished write elsewhere,
// are applied at once; "chained" entries are applied after the commits they
// wait for. A key's writes within one batch all go to the commit its first
// write chose (the later ones replace its entry), so each key is in one
// commit of the batch and its order holds.
//
// Replies. A reply leaves only after the write it depends on is finished
// (duty 2; synced, but for the promises of the next paragraph), and that is
// not only the batch's own write: a Step that persisted nothing (a refused
// prepare, a duplicate accept, a read) may describe a register another
// batch stepped and has not written yet (duty 3). Answering from it would
// let a proposer count an accepted state that a crash takes back. So every
// reply carries a dependency: the commit that last wrote its key when it
// was stepped (its own commit when it wrote; none for a promise it wrote),
// or none when the slot holds only what the store holds; and the ceiling
// raise it needs, if any. Replies are sent as soon as what they wait for
// has finished: once the batch is stepped, after its free commit, and
// after its chained commit and the other batches' commits they wait for.
//
// Promises without a sync (PROTOCOL.md §12; the rules and their safety
// argument are in protocol/floor.go). Four pieces, on together unless
// Config.SyncPromises (the escape hatch, `caspaxos serve --sync-promises`:
// every promise synced before its reply, no floor, no ceiling). They are
// on in the product: internal/sim checks the rules, and internal/chaos
// runs this code under crashes that lose unsynced writes, with requests
// replayed across a restart, and catches Bugs.RestartWithoutFloor;
// unsynced promises without the floor break promises in a crash
// (TestAcceptorCrashLosesUnsyncedPromise):
//   - The floor: New reads the durable acceptor ceiling
//     (storage.AcceptorStore) before it answers anything and keeps it as
//     the floor; step refuses below it (protocol.BelowFloor) right after
//     the age fence, a refusal that waits for nothing.
//   - The ceiling: a request that BelowFloor let through needs a durable
//     ceiling above its counters (protocol.CeilingFor). When the ceiling
//     known durable (ceilDurable) is lower, its reply waits for a raise:
//     the newest one asked for (ceilRaise) if that is high enough, or one
//     of its own batch's, asked for protocol.RaiseCeiling (a step above,
//     so raises are rare). A batch makes at most one raise
//     (SetAcceptorCeiling), before its commits; raises only go up, so a
//     finished raise makes every lower need durable.
//   - Promise-only commits: a commit whose entries all come from promises
//     (protocol.SyncBeforeReply false) is written with ApplyUnsynced; one
//     entry that needs the sync (an accept) makes the whole commit synced.
//     Per-key order is kept as for any commit (chained commits wait for
//     the key's earlier one), and the store keeps its writes in order, so
//     a later accept's sync makes the promise before it durable, and the
//     accept's register carries that promise anyway (Step's register).
//   - Promise replies: a prepare that persisted a promise replies without
//     waiting for its own write, only for its ceiling and for the key's
//     earlier write, if one is still running: the accepted state the
//     promise reveals must be durable before anyone sees it (a quorum of
//     matching accepted ballots in promises counts as chosen, §4 and §6;
//     see protocol.SyncBeforeReply). A cold key's promise reply is sent
//     before the batch's writes start.
// A commit of unsynced promises is "finished" once applied, not durable:
// a refusal or a read waiting for it may describe a promise a crash takes
// back (harmless: a refusal promises nothing, and a read shows only the
// accepted state, which came from a synced commit it was chained after).
//
// Failures. A failed Apply leaves registers in memory that may never be
// durable, and a failed fsync may have lost writes the store had
// acknowledged (PROTOCOL.md §10). The service then stops for good: it
// records the error, steps nothing more, and drops every reply that depends
// on a commit that failed or that never ran because a commit it waited for
// failed. A failed Get drops the messages of that key only: nothing was
// stepped from it.

// Config configures an Acceptor.
type Config struct {
	// ID is the node's ID; replies carry it.
	ID protocol.NodeID
	// MaxInflightBatches bounds the received batches processed at once
	// (default 1024). A batch that arrives beyond it is dropped, as a lossy
	// network would; its proposer retries after its attempt timeout.
	MaxInflightBatches int
	// CacheBytes bounds the registers kept in memory after their batches
	// finished, counted as key and value bytes plus a fixed overhead
	// (default 32 MiB; -1 keeps none).
	CacheBytes int64
	// MaxFenceStep bounds, in ages, how far Fence may raise a proposer's
	// age fence above the highest age this acceptor has seen of it (in its
	// messages, or its fence here); default 1<<20. A fence further up is
	// refused (ErrFenceTooHigh): the GC round fails and is retried. See
	// Fence for why this keeps GC both safe and live.
	MaxFenceStep uint64

	// SyncPromises turns PROTOCOL.md §12 off: every write, a promise's
	// included, is synced before the reply that depends on it, and the
	// acceptor keeps no floor and no ceiling (the behaviour before §12; a
	// cold write then waits for two sync rounds). Off (the default),
	// promises are written without a sync and the floor keeps them across
	// a crash. Either way the acceptor starts with the stored ceiling as
	// its floor, so that turning it on after a crash keeps the promises
	// an earlier run left unsynced; on, it only raises no ceiling and
	// writes nothing unsynced.
	SyncPromises bool
	// ceilingStep (tests only) is RaiseCeiling's step; 0 takes
	// protocol.DefaultAcceptorCeilingStep.
	ceilingStep uint64

	// Bugs is for negative tests only.
	Bugs Bugs
}

// Bugs switches on deliberately broken behaviour of the acceptor service,
// so that tests can show a harness of the real components (internal/chaos)
// catching each one. The zero value is correct behaviour; nothing outside
// tests may set a field.
type Bugs struct {
	// ReplyBeforeSync releases every reply as soon as its batch is
	// stepped, before the writes it depends on are synced (the broken
	// variant of PROTOCOL.md §10): a crash then takes back what was
	// answered.
	ReplyBeforeSync bool
	// NoAgeFence never refuses a message for its age (the broken variant
	// of PROTOCOL.md §9 step 3): fences are still stored, but an accept
	// sent before a key's GC round and delayed past it lands on the
	// removed register, and brings back the value the delete replaced.
	NoAgeFence bool
	// RestartWithoutFloor starts the acceptor with floor 0, whatever its
	// stored ceiling: the broken variant of PROTOCOL.md §12 (the
	// simulator's restart-without-floor), which a crash that loses an
	// unsynced promise lets break it.
	RestartWithoutFloor bool
}

// DefaultConfig returns the defaults of every tunable field (ID is the
// caller's). A zero field of a Config given to New takes its value from here.
func DefaultConfig() Config {
	return Config{
		MaxInflightBatches: 1024,
		CacheBytes:         32 << 20,
		MaxFenceStep:       1 << 20,
	}
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("caspaxos/acceptor: acceptor ID must not be 0")
	}
	def := DefaultConfig()
	if c.MaxInflightBatches < 0 {
		return fmt.Errorf("caspaxos/acceptor: MaxInflightBatches is %d; it must not be negative", c.MaxInflightBatches)
	}
	if c.MaxInflightBatches == 0 {
		c.MaxInflightBatches = def.MaxInflightBatches
	}
	switch {
	case c.CacheBytes < -1:
		return fmt.Errorf("caspaxos/acceptor: CacheBytes is %d; use -1 for no cache", c.CacheBytes)
	case c.CacheBytes == 0:
		c.CacheBytes = def.CacheBytes
	case c.CacheBytes == -1:
		c.CacheBytes = 0
	}
	if c.MaxFenceStep == 0 {
		c.MaxFenceStep = def.MaxFenceStep
	}
	return nil
}

// Acceptor is the acceptor service of one node: it steps received requests
// through protocol.Step, makes the registers durable with group commit, and
// sends the replies through the server.Transport once what they depend on is synced.
type Acceptor struct {
	id    protocol.NodeID
	store storage.Store
	tr    server.Transport
	log   *slog.Logger
	work  chan []protocol.Message // to an idle worker; unbuffered
	quit  chan struct{}           // closed by Stop
	wg    sync.WaitGroup

	mu    sync.Mutex
	slots map[string]*slot
	// writing holds the register commits stepped and not yet finished:
	// a store may show a commit's registers before its sync is done
	// (Pebble publishes a batch when it is applied, and syncs its log
	// after), and Settle waits for them.
	writing map[*commit]struct{}
	lru     list.List // of *slot nobody holds, most recently used first
	cached  int64     // bytes of the slots on lru
	maxIdle int64     // CacheBytes
	failure error     // set once, by the first failed Apply
	stopped bool
	// fences is deletion GC's minimum age per proposer (PROTOCOL.md §9
	// step 3), as persisted; fenceMu serializes raising it (Fence).
	fences  map[protocol.NodeID]uint64
	fenceMu sync.Mutex
	// seen is the highest age each proposer's requests carried here since
	// the start (not persisted), and maxFenceStep MaxFenceStep: Fence
	// refuses to raise a fence further than that above it.
	seen         map[protocol.NodeID]uint64
	maxFenceStep uint64
	// floor is PROTOCOL.md §12's floor, set once in New; ceilStep
	// is RaiseCeiling's step. ceilDurable is the highest acceptor ceiling
	// known durable, ceilRaise the newest raise asked for (nil if none);
	// both under mu.
	floor, ceilStep uint64
	ceilDurable     uint64
	ceilRaise       *commit
	unsynced        bool // !Config.SyncPromises
	bugs            Bugs
	// workers counts the goroutines processing or waiting for batches, idle
	// those waiting; maxWorkers is MaxInflightBatches.
	workers, idle, maxWorkers int

	stats counters

	hinter atomic.Pointer[Hinter] // SetHinter
}

// Hinter learns of every accept once it is durable: server/watch's
// Publisher, whose hint streams tell watching nodes of candidates to
// confirm. Accepted must not block; the state is shared, never modified.
type Hinter interface {
	Accepted(key string, ballot protocol.Ballot, st protocol.State)
}

// SetHinter makes h learn of every accept made durable from now on (nil:
// nobody). An accept is passed after the write it depends on finished,
// never before: a hint is what the acceptor would answer a read with.
func (a *Acceptor) SetHinter(h Hinter) {
	if h == nil {
		a.hinter.Store(nil)
		return
	}
	a.hinter.Store(&h)
}

// slot is the newest register of a key held by a batch in flight. Fields
// other than loaded are guarded by Acceptor.mu, except that the loading batch
// sets reg and loadErr before closing loaded.
type slot struct {
	key     string
	refs    int
	elem    *list.Element // on Acceptor.lru while refs is 0
	loaded  chan struct{}
	loadErr error
	reg     protocol.Register
	write   *commit // the commit that last wrote reg; nil if reg was loaded
	index   int     // reg's entry in write.entries
}

// commit is one write of a batch: register entries (one Apply, or one
// ApplyUnsynced when no entry needs a sync), or a raise of the acceptor
// ceiling to ceiling (no entries).
type commit struct {
	entries []storage.Entry
	sync    bool          // some entry must be durable before its reply
	ceiling uint64        // a ceiling raise: the ceiling it persists
	done    chan struct{} // closed when the write returned or was given up
	err     error         // set before done is closed
}

func newCommit() *commit { return &commit{done: make(chan struct{})} }

func (c *commit) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// New returns an acceptor service storing registers in store and
// sending replies through tr. It starts nothing until Handle is called.
func New(cfg Config, store storage.Store, tr server.Transport, log *slog.Logger) (*Acceptor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil || tr == nil || log == nil {
		return nil, errors.New("caspaxos/acceptor: New needs a store, a transport and a logger")
	}
	fences, err := store.Fences()
	if err != nil {
		return nil, fmt.Errorf("caspaxos/acceptor: reading the acceptor's age fences: %w", err)
	}
	for id, age := range fences {
		// A fence past MaxAge (left by a release that took any fence) would
		// refuse its proposer for good: no age reaches it. Honest fences
		// never pass MaxAge, so lowering it to there is safe.
		fences[id] = min(age, protocol.MaxAge)
	}
	// PROTOCOL.md §12: the floor is the durable ceiling, read before the
	// acceptor answers anything.
	ceiling, err := store.AcceptorCeiling()
	if err != nil {
		return nil, fmt.Errorf("caspaxos/acceptor: reading the acceptor's ceiling: %w", err)
	}
	floor := ceiling
	if cfg.Bugs.RestartWithoutFloor {
		floor = 0
	}
	return &Acceptor{
		floor:       floor,
		ceilStep:    cfg.ceilingStep,
		ceilDurable: ceiling,
		unsynced:    !cfg.SyncPromises,
		bugs:        cfg.Bugs,
		fences:      fences,
		seen:        make(map[protocol.NodeID]uint64),
		id:          cfg.ID,
		store:       store,
		tr:          tr,
		log:         log,
		work:        make(chan []protocol.Message),
		quit:        make(chan struct{}),
		slots:       make(map[string]*slot),
		writing:     make(map[*commit]struct{}),

		maxWorkers:   cfg.MaxInflightBatches,
		maxIdle:      cfg.CacheBytes,
		maxFenceStep: cfg.MaxFenceStep,
	}, nil
}

// Handle takes a batch of requests addressed to this acceptor and processes
// it in the background. It never blocks: a batch beyond MaxInflightBatches,
// or one that arrives after Stop or a failed write, is dropped. Messages
// that are not requests are dropped too.
func (a *Acceptor) Handle(msgs []protocol.Message) {
	msgs = a.requests(msgs)
	if len(msgs) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped || a.failure != nil {
		a.stats.droppedBatches.Add(1)
		return
	}
	select {
	case a.work <- msgs: // an idle worker took it
		return
	default:
	}
	if a.workers == a.maxWorkers {
		a.stats.droppedBatches.Add(1)
		return
	}
	a.workers++
	a.wg.Add(1)
	go a.worker(msgs)
}

// worker processes batches, one at a time, until it has been idle while
// enough others were. Workers live on because a fresh goroutine would grow
// its stack again for every batch.
func (a *Acceptor) worker(msgs []protocol.Message) {
	defer a.wg.Done()
	for {
		a.process(msgs)
		a.mu.Lock()
		if a.idle >= maxIdleWorkers {
			a.workers--
			a.mu.Unlock()
			return
		}
		a.idle++
		a.mu.Unlock()
		var ok bool
		select {
		case msgs = <-a.work:
			ok = true
		case <-a.quit:
		}
		a.mu.Lock()
		a.idle--
		if !ok {
			a.workers--
		}
		a.mu.Unlock()
		if !ok {
			return
		}
	}
}

// maxIdleWorkers bounds the workers kept waiting for batches.
const maxIdleWorkers = 64

// requests returns the messages of msgs that are requests addressed here.
func (a *Acceptor) requests(msgs []protocol.Message) []protocol.Message {
	for i, m := range msgs {
		if !m.Kind.IsRequest() || m.To != a.id {
			out := append([]protocol.Message(nil), msgs[:i]...)
			for _, m := range msgs[i+1:] {
				if m.Kind.IsRequest() && m.To == a.id {
					out = append(out, m)
				}
			}
			a.log.Debug("acceptor dropped messages that are not requests for it", slog.Int("dropped", len(msgs)-len(out)))
			return out
		}
	}
	return msgs
}

// Stop stops taking batches and waits for those in flight to finish.
func (a *Acceptor) Stop() {
	a.mu.Lock()
	if !a.stopped {
		a.stopped = true
		close(a.quit)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// Err returns the error that stopped the acceptor, or nil.
func (a *Acceptor) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failure
}

// batch is one received batch on its way through the service.
type batch struct {
	msgs    []protocol.Message
	slots   []*slot
	replies []protocol.Message
	deps    []*commit // per reply: the commit it waits for, nil if none
	ceils   []*commit // per reply: the ceiling raise it waits for, nil if none
	raise   *commit   // this batch's ceiling raise, if it needs one
	free    *commit   // writes that wait for nothing
	chained *commit   // writes that wait for other batches' commits
	after   []*commit // the other batches' commits chained waits for
	hints   []hint    // replies that confirm an accept, for the Hinter
}

// hint is a reply of a batch that confirms an accept, and the state it
// accepted.
type hint struct {
	reply int
	state protocol.State
}

func (a *Acceptor) process(msgs []protocol.Message) {
	b := &batch{msgs: msgs}
	a.pin(b)
	a.step(b)
	sent := make([]bool, len(b.replies))
	a.sendReady(b, sent) // refusals, promises, replies from synced registers
	a.raiseCeiling(b.raise)
	a.apply(b.free, nil)
	a.sendReady(b, sent)
	a.apply(b.chained, b.after)
	a.unpin(b)
	a.sendRest(b, sent)
	a.hint(b)
	a.stats.batches.Add(1)
}

// hint passes b's accepts whose writes succeeded to the Hinter. Called
// after every commit of b finished.
func (a *Acceptor) hint(b *batch) {
	hp := a.hinter.Load()
	if hp == nil {
		return
	}
	for _, h := range b.hints {
		if i := h.reply; written(b.deps[i]) && written(b.ceils[i]) {
			(*hp).Accepted(b.replies[i].Key, b.replies[i].Ballot, h.state)
		}
	}
}

// pin takes a reference on the slot of every key of b, creating and loading
// the slots nobody held.
func (a *Acceptor) pin(b *batch) {
	b.slots = make([]*slot, len(b.msgs))
	var fresh []int
	a.mu.Lock()
	for i, m := range b.msgs {
		s := a.slots[m.Key]
		switch {
		case s == nil:
			s = &slot{key: m.Key, loaded: make(chan struct{})}
			a.slots[m.Key] = s
			fresh = append(fresh, i)
		case s.elem != nil:
			a.uncache(s)
		}
		s.refs++
		b.slots[i] = s
	}
	a.mu.Unlock()
	for _, i := range fresh {
		s := b.slots[i]
		s.reg, s.loadErr = a.store.Get(b.msgs[i].Key)
		if s.loadErr != nil {
			a.log.Error("acceptor could not read a register", slog.String("key", b.msgs[i].Key), slog.Any("error", s.loadErr))
		}
		close(s.loaded)
	}
	for _, s := range b.slots {
		<-s.loaded
	}
}

// unpin drops b's references. A slot nobody holds any more goes to the
// cache: b's own commits have finished by now, and so have those of every
// batch that no longer holds the slot, so its register is in the store
// (synced, or written unsynced if it changed only a promise: Get returns
// it all the same).
func (a *Acceptor) unpin(b *batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range b.slots {
		s.refs--
		if s.refs > 0 {
			continue
		}
		if s.loadErr != nil || a.maxIdle == 0 {
			delete(a.slots, s.key)
			continue
		}
		s.write = nil // finished; do not keep its entries alive
		s.elem = a.lru.PushFront(s)
		a.cached += slotBytes(s)
	}
	for a.cached > a.maxIdle {
		old := a.lru.Back().Value.(*slot)
		a.uncache(old)
		delete(a.slots, old.key)
	}
}

// uncache takes s off the LRU list. Called under mu.
func (a *Acceptor) uncache(s *slot) {
	a.lru.Remove(s.elem)
	s.elem = nil
	a.cached -= slotBytes(s)
}

// slotBytes is what a cached slot is counted as: its key and value, and
// about what the slot, its register and the map entry take besides.
func slotBytes(s *slot) int64 { return int64(len(s.key)+len(s.reg.State.Value)) + 256 }

// step runs protocol.Step on every message of b, in order, under mu.
func (a *Acceptor) step(b *batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failure != nil {
		return
	}
	b.replies = make([]protocol.Message, 0, len(b.msgs))
	b.deps = make([]*commit, 0, len(b.msgs))
	b.ceils = make([]*commit, 0, len(b.msgs))
	hinted := a.hinter.Load() != nil
	for i, m := range b.msgs {
		s := b.slots[i]
		if s.loadErr != nil {
			continue
		}
		// PROTOCOL.md §9 step 3: a proposer's message older than its age
		// fence is refused without looking at the register.
		if m.Age > a.seen[m.From] && m.Age <= protocol.MaxAge {
			a.seen[m.From] = m.Age
		}
		if reply, fenced := protocol.Fenced(m, a.fences[m.From]); fenced && !a.bugs.NoAgeFence {
			b.replies = append(b.replies, reply)
			b.deps = append(b.deps, nil)
			b.ceils = append(b.ceils, nil)
			a.stats.fenced.Add(1)
			continue
		}
		// PROTOCOL.md §12: below the floor, refused on every key; the
		// refusal reveals only the floor, which is durable.
		if reply, refused := protocol.BelowFloor(m, a.floor); refused {
			b.replies = append(b.replies, reply)
			b.deps = append(b.deps, nil)
			b.ceils = append(b.ceils, nil)
			a.stats.floorRefused.Add(1)
			continue
		}
		var ceil *commit
		if a.unsynced {
			ceil = a.ceilingFor(b, protocol.CeilingFor(m))
		}
		next, reply, persist := protocol.Step(s.reg, m)
		earlier := s.write // the key's latest write before this Step
		dep := earlier
		if persist {
			synced := !a.unsynced || protocol.SyncBeforeReply(reply)
			dep = b.record(m.Key, s, next, synced)
			if !synced {
				// A promise: the floor keeps it, once ceil is durable;
				// the accepted state it shows must be durable already.
				dep = earlier
			}
		}
		if a.bugs.ReplyBeforeSync {
			dep, ceil = nil, nil // the broken variant: wait for nothing
		}
		if reply.Kind == protocol.MsgAccepted && persist && hinted {
			b.hints = append(b.hints, hint{reply: len(b.replies), state: m.State})
		}
		b.replies = append(b.replies, reply)
		b.deps = append(b.deps, dep)
		b.ceils = append(b.ceils, ceil)
	}
	for _, c := range []*commit{b.free, b.chained} {
		if c != nil {
			a.writing[c] = struct{}{}
		}
	}
}

// Settle waits until every register write stepped before it was called
// has finished: written durably (or, for a promise-only commit, applied),
// or failed. A scan of the store that ended before Settle was called shows
// only registers from such writes, or older ones; once Settle returns nil,
// what it showed is durable, and may be told to others (a listing's scan,
// server/list: the read rule counts the accepted ballots it shows, and a
// state a quorum of scans showed must not be lost in a crash). Each
// finished write costs nothing; a write still in flight is waited for, not
// synced again. It returns the acceptor's failure if it has failed, and
// ctx's error if ctx ends first.
func (a *Acceptor) Settle(ctx context.Context) error {
	a.mu.Lock()
	waits := make([]*commit, 0, len(a.writing))
	for c := range a.writing {
		waits = append(waits, c)
	}
	a.mu.Unlock()
	for _, c := range waits {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return a.Err()
}

// ceilingFor returns the ceiling raise a reply must wait for so that the
// durable acceptor ceiling is at least need (nil if it already is), asking
// b's raise for it when no raise asked for so far is high enough. Called
// under mu, before b's raise starts.
func (a *Acceptor) ceilingFor(b *batch, need uint64) *commit {
	if need <= a.ceilDurable {
		return nil
	}
	// A raise not durable yet (or b's own): the newest one asked for is
	// the highest, and finished raises have made ceilDurable reach theirs.
	if r := a.ceilRaise; r != nil && need <= r.ceiling {
		return r
	}
	if b.raise == nil {
		b.raise = newCommit()
		a.ceilRaise = b.raise
	}
	b.raise.ceiling = max(b.raise.ceiling, protocol.RaiseCeiling(need, a.ceilStep))
	return b.raise
}

// record makes next the newest register of s and puts it in one of b's
// commits, which it marks synced if synced; it returns that commit. Called
// under Acceptor.mu.
func (b *batch) record(key string, s *slot, next protocol.Register, synced bool) *commit {
	s.reg = next
	if w := s.write; w != nil && (w == b.free || w == b.chained) {
		// Written earlier in this batch: replace that entry.
		w.entries[s.index].Register = next
		w.sync = w.sync || synced
		return w
	}
	var c *commit
	if s.write == nil || s.write.finished() {
		if b.free == nil {
			b.free = newCommit()
		}
		c = b.free
	} else {
		if b.chained == nil {
			b.chained = newCommit()
		}
		c = b.chained
		b.after = append(b.after, s.write)
	}
	c.entries = append(c.entries, storage.Entry{Key: key, Register: next})
	c.sync = c.sync || synced
	s.write, s.index = c, len(c.entries)-1
	return c
}

// raiseCeiling persists r's ceiling (if r is not nil) and then counts it
// as durable. A failure stops the acceptor, as a failed Apply does.
func (a *Acceptor) raiseCeiling(r *commit) {
	if r == nil {
		return
	}
	defer close(r.done)
	if r.err = a.Err(); r.err != nil {
		return
	}
	if r.err = a.store.SetAcceptorCeiling(r.ceiling); r.err != nil {
		a.fail(r.err)
		return
	}
	a.mu.Lock()
	a.ceilDurable = max(a.ceilDurable, r.ceiling)
	a.mu.Unlock()
	a.stats.ceilingRaises.Add(1)
}

// apply waits for the commits in after, then writes c (if not nil):
// durably, or with ApplyUnsynced if none of its entries needs a sync. It
// gives c up, with an error, if one of them failed or the acceptor has.
func (a *Acceptor) apply(c *commit, after []*commit) {
	if c == nil {
		return
	}
	defer func() {
		a.mu.Lock()
		delete(a.writing, c)
		a.mu.Unlock()
		close(c.done)
	}()
	for _, w := range after {
		<-w.done
		if w.err != nil {
			c.err = w.err
			return
		}
	}
	if c.err = a.Err(); c.err != nil {
		return
	}
	write := a.store.Apply
	if !c.sync {
		write = a.store.ApplyUnsynced
	}
	if c.err = write(c.entries); c.err != nil {
		a.fail(c.err)
		return
	}
	if !c.sync {
		a.stats.unsyncedApplies.Add(1)
	}
	a.stats.applies.Add(1)
	a.stats.entries.Add(uint64(len(c.entries)))
}

// fail stops the acceptor for good after a failed write.
func (a *Acceptor) fail(err error) {
	a.mu.Lock()
	first := a.failure == nil
	if first {
		a.failure = err
	}
	a.mu.Unlock()
	if first {
		a.log.Error("acceptor stopped: a write failed, so its registers in memory may not be durable", slog.Any("error", err))
	}
}

// written reports whether the write w a reply waits for (nil: none) has
// finished without error.
func written(w *commit) bool { return w == nil || (w.finished() && w.err == nil) }

// sendReady sends the replies not sent yet (sent) whose commit and
// ceiling raise have finished without error, and marks them sent.
func (a *Acceptor) sendReady(b *batch, sent []bool) {
	var now []int
	for i := range b.replies {
		if !sent[i] && written(b.deps[i]) && written(b.ceils[i]) {
			sent[i] = true
			now = append(now, i)
		}
	}
	switch len(now) {
	case 0:
		return
	case len(b.replies):
		a.send(b.replies) // all of them at once: no copy (b.replies is not read again)
		return
	}
	out := make([]protocol.Message, len(now))
	for j, i := range now {
		out[j] = b.replies[i]
	}
	a.send(out)
}

// sendRest waits for the commits and raises of the replies not sent yet
// and sends those whose writes succeeded.
func (a *Acceptor) sendRest(b *batch, sent []bool) {
	var out []protocol.Message
	for i := range sent {
		if sent[i] {
			continue
		}
		r := b.replies[i]
		ok := true
		for _, w := range [2]*commit{b.ceils[i], b.deps[i]} {
			if w != nil {
				<-w.done
				ok = ok && w.err == nil
			}
		}
		if ok {
			out = append(out, r)
		} else {
			a.stats.droppedReplies.Add(1)
		}
	}
	a.send(out)
}

// send groups replies by destination and hands them to the transport, which
// may keep what it is given: replies itself when all go to one destination
// (the common case: one batch came from one proposer), otherwise copies.
func (a *Acceptor) send(replies []protocol.Message) {
	if len(replies) > 0 && allTo(replies, replies[0].To) {
		a.sendTo(replies[0].To, replies)
		return
	}
	for len(replies) > 0 {
		to := replies[0].To
		var group, rest []protocol.Message
		for _, r := range replies {
			if r.To == to {
				group = append(group, r)
			} else {
				rest = append(rest, r)
			}
		}
		a.sendTo(to, group)
		replies = rest
	}
}

func (a *Acceptor) sendTo(to protocol.NodeID, group []protocol.Message) {
	if err := a.tr.Send(to, group); err != nil {
		a.log.Debug("acceptor could not send replies", slog.Uint64("to", uint64(to)), slog.Any("error", err))
	}
	a.stats.replies.Add(uint64(len(group)))
}

func allTo(msgs []protocol.Message, to protocol.NodeID) bool {
	for _, m := range msgs {
		if m.To != to {
			return false
		}
	}
	return true
}

// Stats counts an acceptor's work since it started.
type Stats struct {
	// Batches is the number of received batches processed.
	Batches uint64
	// DroppedBatches counts batches dropped (too many in flight, or stopped).
	DroppedBatches uint64
	// Applies is the number of register writes that succeeded (Store.Apply
	// or, for promise-only commits, ApplyUnsynced), and Entries the
	// registers they wrote: Entries/Applies is the mean number of registers
	// per write. UnsyncedApplies counts the ApplyUnsynced among Applies.
	Applies         uint64
	Entries         uint64
	UnsyncedApplies uint64
	// Replies is the number of replies sent; DroppedReplies the number
	// withheld because a write they depended on failed.
	Replies        uint64
	DroppedReplies uint64
	// Fenced counts requests refused by deletion GC's age fence.
	Fenced uint64
	// FloorRefused counts requests refused below the floor (PROTOCOL.md
	// §12), and CeilingRaises the acceptor ceiling raises persisted.
	FloorRefused  uint64
	CeilingRaises uint64
	// Collected counts registers removed by deletion GC.
	Collected uint64
}

type counters struct {
	batches, droppedBatches, applies, entries, replies, droppedReplies atomic.Uint64
	fenced, collected, unsyncedApplies, floorRefused, ceilingRaises    atomic.Uint64
}

// Stats returns the acceptor's counters.
func (a *Acceptor) Stats() Stats {
	s := &a.stats
	return Stats{
		Batches:         s.batches.Load(),
		DroppedBatches:  s.droppedBatches.Load(),
		Applies:         s.applies.Load(),
		Entries:         s.entries.Load(),
		Replies:         s.replies.Load(),
		DroppedReplies:  s.droppedReplies.Load(),
		Fenced:          s.fenced.Load(),
		FloorRefused:    s.floorRefused.Load(),
		CeilingRaises:   s.ceilingRaises.Load(),
		UnsyncedApplies: s.unsyncedApplies.Load(),
		Collected:       s.collected.Load(),
	}
}
