package proposer

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
)

// Config configures a Proposer driver. Durations are wall-clock
// time; zero means the default.
type Config struct {
	// ID is the node's ID, part of every ballot the proposer makes.
	ID protocol.NodeID
	// Acceptors is the acceptor configuration to propose to.
	Acceptors protocol.Config
	// AttemptTimeout is how long one attempt (a prepare or an accept round)
	// waits for a quorum before it is retried (default 500ms).
	AttemptTimeout time.Duration
	// ReadTimeout is how long a fast-path read waits before it falls back
	// to the identity change (default 100ms).
	ReadTimeout time.Duration
	// ReadNearTimeout is how long a fast-path read waits for the read
	// quorum it asks first (its own acceptor and the nearest others)
	// before it asks the remaining acceptors too (default 10ms). Asking
	// only a quorum first saves messages; this bounds what that costs when
	// one of them is slow or down.
	ReadNearTimeout time.Duration
	// GatherWindow is how long a contended key may hold its next batch
	// back for the callers its last batch just answered, so that their next
	// changes join the ones already waiting and commit in the same round
	// (protocol.ProposerConfig.Gather). It should be about one turnaround
	// of a caller. Default 1ms; negative: never hold.
	GatherWindow time.Duration
	// BackoffBase and BackoffMax bound the jittered exponential delay before
	// a failed attempt is retried (defaults 2ms and 200ms). With Distances,
	// the delay starts at the round trip to the nearest quorum when that is
	// longer than BackoffBase, and may then exceed BackoffMax (retryDelay).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxBatch, MaxCachedKeys, MaxCachedBytes and CeilingStep are passed
	// to protocol.ProposerConfig (zero: its defaults).
	MaxBatch       int
	MaxCachedKeys  int
	MaxCachedBytes int64
	CeilingStep    uint64
	// RandSeed seeds the backoff jitter; zero picks a seed from the clock.
	RandSeed uint64
	// Distances, if not nil, reports measured round trips to other nodes:
	// the attempt and read timeouts then stretch to twice the round trip to
	// the nearest quorum when that is longer (see timeouts.go).
	Distances server.Distancer
	// Deleted, if not nil, is called with the key and the tombstone's
	// version of every change that left a tombstone (a delete that
	// succeeded), after it was chosen and before Propose returns: deletion
	// GC's queue is fed from it. It must not block.
	Deleted func(key string, version uint64)
	// Idempotency is the window of exactly-once writes (kv.Idempotency;
	// zero: kv.DefaultIdempotency).
	Idempotency kv.Idempotency
	// Now, if not nil, is the clock that fixes a change's time before it
	// runs (exactly-once writes); nil: time.Now.
	Now func() time.Time
}

// DefaultGatherWindow is Config.GatherWindow's default.
const DefaultGatherWindow = time.Millisecond

// MaxTimeout bounds every timeout and backoff of Config: a longer one is
// a mistake in its unit, not a tuning.
const MaxTimeout = time.Hour

// MaxGatherWindow bounds GatherWindow: holding a batch longer than this
// would cost more latency than any round it saves.
const MaxGatherWindow = time.Second

// DefaultConfig returns the defaults of every tunable field (ID,
// Acceptors, Distances, Deleted and RandSeed are the caller's). A zero
// field of a Config given to New takes its value from here; MaxBatch,
// MaxCachedKeys, MaxCachedBytes and CeilingStep take
// protocol.DefaultProposerConfig's.
func DefaultConfig() Config {
	core := protocol.DefaultProposerConfig()
	return Config{
		AttemptTimeout:  500 * time.Millisecond,
		ReadTimeout:     100 * time.Millisecond,
		ReadNearTimeout: 10 * time.Millisecond,
		GatherWindow:    DefaultGatherWindow,
		BackoffBase:     2 * time.Millisecond,
		BackoffMax:      200 * time.Millisecond,
		MaxBatch:        core.MaxBatch,
		MaxCachedKeys:   core.MaxCachedKeys,
		MaxCachedBytes:  core.MaxCachedBytes,
		CeilingStep:     core.CeilingStep,
	}
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("caspaxos/proposer: proposer ID must not be 0")
	}
	def := DefaultConfig()
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"AttemptTimeout", &c.AttemptTimeout, def.AttemptTimeout},
		{"ReadTimeout", &c.ReadTimeout, def.ReadTimeout},
		{"ReadNearTimeout", &c.ReadNearTimeout, def.ReadNearTimeout},
		{"BackoffBase", &c.BackoffBase, def.BackoffBase},
		{"BackoffMax", &c.BackoffMax, def.BackoffMax},
	}
	for _, d := range durations {
		if *d.d < 0 || *d.d > MaxTimeout {
			return fmt.Errorf("caspaxos/proposer: %s is %v; it must be between 0 (default %v) and %v", d.name, *d.d, d.def, MaxTimeout)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	switch {
	case c.GatherWindow > MaxGatherWindow:
		return fmt.Errorf("caspaxos/proposer: GatherWindow is %v; it must be at most %v (negative: off)", c.GatherWindow, MaxGatherWindow)
	case c.GatherWindow == 0:
		c.GatherWindow = def.GatherWindow
	}
	if c.BackoffMax < c.BackoffBase {
		return fmt.Errorf("caspaxos/proposer: BackoffMax %v is below BackoffBase %v", c.BackoffMax, c.BackoffBase)
	}
	if c.Idempotency == (kv.Idempotency{}) {
		c.Idempotency = kv.DefaultIdempotency()
	}
	if err := c.Idempotency.Validate(); err != nil {
		return fmt.Errorf("caspaxos/proposer: %w", err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBatch < 0 || c.MaxCachedKeys < 0 || c.MaxCachedBytes < 0 {
		return errors.New("caspaxos/proposer: MaxBatch, MaxCachedKeys and MaxCachedBytes must not be negative")
	}
	return c.Acceptors.Validate()
}

// Store persists the proposer's ballot ceiling and its deletion GC
// age; storage.Store is one. Each Set is durable when it returns.
type Store interface {
	Ceiling() (uint64, error)
	SetCeiling(c uint64) error
	Age() (uint64, error)
	SetAge(age uint64) error
}

// Proposer drives a protocol.Proposer: one goroutine owns it and performs
// the duties of its Ready (persist the ceiling, then send, then answer, then
// start timers), runs its timers and cancels the requests whose callers gave
// up. Callers submit requests with Propose from any goroutine.
type Proposer struct {
	cfg  Config
	core *protocol.Proposer
	ceil Store
	tr   server.Transport
	log  *slog.Logger
	rng  *rand.Rand

	nextID  atomic.Uint64
	submit  chan *call
	cancel  chan protocol.ReqID
	forgets chan *forgetCall
	admin   chan func(*protocol.Proposer) // membership hooks (proposer_membership.go)
	replies chan []protocol.Message
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	// Owned by the run goroutine.
	dist   quorumDistances
	calls  map[protocol.ReqID]*call
	timers timerQueue
	acc    ready

	stats counters
}

// call is one request waiting for its result.
type call struct {
	id     protocol.ReqID
	key    string
	change protocol.Change // nil: a read, or a GC write
	// timed, if set, builds change at the time of each attempt
	// (protocol.Proposer.ProposeTimed): a write with a request ID.
	timed  protocol.TimedChange
	gc     bool // a deletion GC write (ProposeGC)
	force  bool // a membership catch-up write (Rewrite)
	fast   bool // a read on the fast path only (FastRead)
	result chan protocol.Result
}

// forgetCall is one Forget waiting for the driver.
type forgetCall struct {
	tombs   []protocol.Tombstone
	counter uint64      // FastForward's: move the ballot counter to at least this
	result  chan uint64 // the age, once persisted
	err     error       // set by the driver before result is sent
}

// maxDrain bounds how many inputs the driver takes before it acts on them:
// enough to compose waiting changes and share sends, few enough to keep
// latency low.
const maxDrain = 512

// New reads the persisted ballot ceiling and age from ceil, builds
// the protocol.Proposer and starts its goroutine; Stop ends it.
func New(cfg Config, ceil Store, tr server.Transport, log *slog.Logger) (*Proposer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ceil == nil || tr == nil || log == nil {
		return nil, errors.New("caspaxos/proposer: New needs a ceiling store, a transport and a logger")
	}
	ceiling, err := ceil.Ceiling()
	if err != nil {
		return nil, fmt.Errorf("caspaxos/proposer: reading the ballot ceiling: %w", err)
	}
	age, err := ceil.Age()
	if err != nil {
		return nil, fmt.Errorf("caspaxos/proposer: reading the proposer's age: %w", err)
	}
	core, err := protocol.NewProposer(protocol.ProposerConfig{
		ID:             cfg.ID,
		Acceptors:      cfg.Acceptors,
		Ceiling:        ceiling,
		CeilingStep:    cfg.CeilingStep,
		MaxBatch:       cfg.MaxBatch,
		MaxCachedKeys:  cfg.MaxCachedKeys,
		MaxCachedBytes: cfg.MaxCachedBytes,
		Age:            age,
		Gather:         cfg.GatherWindow > 0,
	})
	if err != nil {
		return nil, fmt.Errorf("caspaxos/proposer: %w", err)
	}
	seed := cfg.RandSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	p := &Proposer{
		cfg:     cfg,
		core:    core,
		ceil:    ceil,
		tr:      tr,
		log:     log,
		rng:     rand.New(rand.NewPCG(seed, uint64(cfg.ID))),
		submit:  make(chan *call, maxDrain),
		cancel:  make(chan protocol.ReqID, maxDrain),
		forgets: make(chan *forgetCall),
		admin:   make(chan func(*protocol.Proposer)),
		replies: make(chan []protocol.Message, maxDrain),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		calls:   make(map[protocol.ReqID]*call),
	}
	go p.run()
	return p, nil
}

// Propose runs req on this proposer and returns the key's state after it
// (for a read or a refusal: the state it was given). Errors:
//   - the change's own refusal (kv's errors), once the state it saw is chosen;
//   - kv.ErrNoQuorum wrapping ctx.Err(): ctx was done before any accept
//     carrying the change was sent; it was not applied and never will be.
//     If ctx was done before the driver even took the change (it is busy:
//     a queue of maxDrain waits already), the error also wraps
//     kv.ErrOverloaded, and its code is overloaded;
//   - kv.ErrUnknownOutcome: an accept was sent and no quorum confirmed it
//     before ctx was done or the proposer stopped; it may still take effect;
//   - server.ErrStopped: the proposer stopped first; not applied.
//
// A write with a request ID runs at most once (kv.Idempotent), at the
// time of each attempt, fixed before its change runs; repeated, it
// returns its first outcome.
func (p *Proposer) Propose(ctx context.Context, req server.Request) (protocol.State, error) {
	change, err := req.ChangeAt(p.cfg.Now().UnixMilli(), p.cfg.Idempotency)
	if err != nil {
		return protocol.State{}, err
	}
	c := &call{
		id:     protocol.ReqID(p.nextID.Add(1)),
		key:    req.Op.Key,
		change: change,
		result: make(chan protocol.Result, 1),
	}
	if req.Change == nil && req.Op.RequestID != "" && change != nil {
		// The time of an exactly-once write is that of each attempt, not
		// of its arrival (see protocol.Proposer.ProposeTimed). ChangeAt's
		// only error is a malformed ID, refused above at any time.
		idem := p.cfg.Idempotency
		c.timed = func(nowMillis int64) protocol.Change {
			ch, err := req.ChangeAt(nowMillis, idem)
			if err != nil {
				return func(protocol.State) (protocol.Write, error) { return protocol.Write{}, err }
			}
			return ch
		}
	}
	if c.change == nil && req.Op.Kind != kv.OpGet {
		return protocol.State{}, fmt.Errorf("caspaxos/proposer: unknown operation %v", req.Op.Kind)
	}
	r, err := p.roundTrip(ctx, c)
	if err != nil {
		return protocol.State{}, err
	}
	st, err := outcome(ctx, r)
	if first, ok := kv.Outcome(err); ok {
		return first, nil // a repeated request: its first outcome, chosen
	}
	if err == nil && c.change != nil && st.Deleted && p.cfg.Deleted != nil {
		p.cfg.Deleted(c.key, st.Version)
	}
	return st, err
}

// FastRead reads key on the fast path only (protocol.Proposer.FastRead):
// what a node that is not the key's home does before it forwards a read.
// It returns protocol.ErrSlowRead when the fast path could not finish
// (nothing was changed; the key's home can run the read), and otherwise
// what Propose returns for a read.
func (p *Proposer) FastRead(ctx context.Context, key string) (protocol.State, error) {
	c := &call{id: protocol.ReqID(p.nextID.Add(1)), key: key, fast: true, result: make(chan protocol.Result, 1)}
	r, err := p.roundTrip(ctx, c)
	if err != nil {
		return protocol.State{}, err
	}
	return outcome(ctx, r)
}

// roundTrip hands c to the driver and waits for its result. It returns an
// error only when there is no result: kv.ErrNoQuorum (and kv.ErrOverloaded) wrapping ctx.Err()
// if ctx was done before the driver took c, server.ErrStopped if the driver
// stopped first.
func (p *Proposer) roundTrip(ctx context.Context, c *call) (protocol.Result, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Result{}, fmt.Errorf("%w: %w", kv.ErrNoQuorum, err)
	}
	select {
	case p.submit <- c:
	case <-ctx.Done():
		// Nothing of it left this node: its driver is the bottleneck.
		return protocol.Result{}, fmt.Errorf("%w: the proposer did not take the request before its deadline: %w: %w",
			kv.ErrOverloaded, kv.ErrNoQuorum, ctx.Err())
	case <-p.done:
		return protocol.Result{}, server.ErrStopped
	}
	select {
	case r := <-c.result:
		return r, nil
	case <-p.done:
		return p.lastResult(c)
	case <-ctx.Done():
	}
	// The caller gives up: the driver answers whether anything was sent.
	select {
	case p.cancel <- c.id:
	case r := <-c.result:
		return r, nil
	case <-p.done:
		return p.lastResult(c)
	}
	select {
	case r := <-c.result:
		return r, nil
	case <-p.done:
		return p.lastResult(c)
	}
}

// lastResult is the result of c once the driver has stopped: the driver
// answers every request it took before it stops, so no result means it
// never took c.
func (p *Proposer) lastResult(c *call) (protocol.Result, error) {
	select {
	case r := <-c.result:
		return r, nil
	default:
		return protocol.Result{}, server.ErrStopped
	}
}

// outcome maps a protocol result to what Propose returns.
func outcome(ctx context.Context, r protocol.Result) (protocol.State, error) {
	switch {
	case r.Err == nil:
		return r.State, nil
	case errors.Is(r.Err, protocol.ErrAborted):
		if err := ctx.Err(); err != nil {
			return protocol.State{}, fmt.Errorf("%w: %w", kv.ErrNoQuorum, err)
		}
		return protocol.State{}, server.ErrStopped
	case errors.Is(r.Err, protocol.ErrUnknownOutcome):
		if err := ctx.Err(); err != nil {
			return protocol.State{}, fmt.Errorf("%w: %w", kv.ErrUnknownOutcome, err)
		}
		return protocol.State{}, kv.ErrUnknownOutcome
	default:
		return r.State, r.Err
	}
}

// Deliver hands the proposer replies from acceptors. It blocks while the
// driver's queue is full, and drops the replies once the driver stopped.
func (p *Proposer) Deliver(msgs []protocol.Message) {
	// Never block the caller: it is a transport's receive loop, and a
	// stalled receive loop stops the peer's heartbeats too, so overload
	// would look like a dead peer. A reply dropped here is a lost message,
	// which the protocol tolerates (the attempt times out and retries).
	select {
	case p.replies <- msgs:
	case <-p.done:
	default:
		p.stats.droppedReplies.Add(uint64(len(msgs)))
	}
}

// Stop ends the driver: every request it holds is cancelled and answered
// (server.ErrStopped if nothing was sent for it, ErrUnknownOutcome otherwise), and
// nothing more is sent. It waits for the goroutine to end.
func (p *Proposer) Stop() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// Done is closed once the driver has stopped, by Stop or after a failure to
// persist its ballot ceiling.
func (p *Proposer) Done() <-chan struct{} { return p.done }
