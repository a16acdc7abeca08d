package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// NodeState is what a node keeps of membership change, persisted: the
// membership it uses, and whether a change is in progress (then deletion
// GC waits: its "every acceptor" must be a fixed set) and which node runs it.
type NodeState struct {
	Membership Membership `json:"membership"`
	Changing   bool       `json:"changing,omitempty"`
	Controller string     `json:"controller,omitempty"`
	// ChangeID names the change that holds the node (with Changing; empty
	// from controllers that predate it), so that a node can ask whether
	// that change still runs (see Keeper.ReleaseStale).
	ChangeID string `json:"change_id,omitempty"`
}

// Peers reaches the nodes of the cluster for a Controller, by member
// (a joining node is known by its address only). Every method is
// idempotent; an error means the call may or may not have taken effect.
type Peers interface {
	// SetState makes node to take st (see Keeper.Set).
	SetState(ctx context.Context, to Member, st NodeState) error
	// Settled reports whether node to's proposer uses version or newer and
	// has no attempt in flight with an older configuration.
	Settled(ctx context.Context, to Member, version uint64) (bool, error)
	// Fences returns what node to holds that a joining node must take
	// (ReadFences); SetFences makes node to take it (TakeFences).
	Fences(ctx context.Context, to Member) (Fences, error)
	SetFences(ctx context.Context, to Member, f Fences) error
	// ScanKeys returns up to limit keys of node to's acceptor at or after
	// start, in order.
	ScanKeys(ctx context.Context, to Member, start string, limit int) ([]string, error)
}

// Rewriter runs the catch-up's identity writes on the controller's node:
// a *proposer.Proposer is one.
type Rewriter interface {
	Rewrite(ctx context.Context, keys []string) []protocol.Result
}

// ChangeStore persists the controller's progress. Load returns nil when no
// change is in progress; Save(nil) clears it. Save is durable on return.
type ChangeStore interface {
	LoadChange() (*Change, error)
	SaveChange(c *Change) error
}

// Change is a membership change in progress, as persisted: a controller
// that crashes resumes it at Next.
type Change struct {
	// ID names the change on the nodes it holds (NodeState.ChangeID);
	// empty for changes persisted before IDs.
	ID     string     `json:"id,omitempty"`
	Op     string     `json:"op"` // "add" or "remove"
	Target Member     `json:"target"`
	From   Membership `json:"from"`
	Steps  []Step     `json:"steps"`
	// Paused: every node has been told a change is in progress.
	Paused bool `json:"paused,omitempty"`
	// Next is the step being applied; those before are done everywhere.
	Next int `json:"next"`
	// For Steps[Next]: fences copied, set on every node, settled everywhere.
	FencesCopied bool    `json:"fences_copied,omitempty"`
	Applied      bool    `json:"applied,omitempty"`
	Settled      bool    `json:"settled,omitempty"`
	CaughtUp     bool    `json:"caught_up,omitempty"`
	CatchUp      CatchUp `json:"catch_up"`
	// Error is the last failure (the step is being retried).
	Error string `json:"error,omitempty"`
	// Abandon, when set, says why the change cannot go on (a node is held
	// by another controller's change, or already uses a newer membership);
	// nothing of it was applied. The controller then frees the nodes its
	// pause held, and the change ends with that reason.
	Abandon string `json:"abandon,omitempty"`
	// Refused lists the nodes that answered the abandoned pause that it was
	// not theirs to pause: release leaves them alone.
	Refused []protocol.NodeID `json:"refused,omitempty"`
}

// CatchUp is the progress of a catch-up: keys before Cursor are done.
type CatchUp struct {
	Counted bool   `json:"counted,omitempty"`
	Total   uint64 `json:"total"`
	Done    uint64 `json:"done"`
	Cursor  string `json:"cursor,omitempty"`
}

// Clone returns a deep copy of c.
func (c *Change) Clone() *Change {
	if c == nil {
		return nil
	}
	out := *c
	out.From = c.From.Clone()
	out.Steps = slices.Clone(c.Steps)
	out.Refused = slices.Clone(c.Refused)
	return &out
}

// ControllerConfig configures a Controller. Zero values mean the defaults.
type ControllerConfig struct {
	// Self is the node the controller runs on (named in NodeState).
	Self Member
	// PageKeys is how many keys one catch-up page rewrites (default 256).
	PageKeys int
	// RetryBase and RetryMax bound the delay before a failed step is
	// retried (defaults 50ms and 2s); CallTimeout bounds one call to a node
	// (default 5s); SettlePoll is how often Settled is asked (default 20ms).
	RetryBase   time.Duration
	RetryMax    time.Duration
	CallTimeout time.Duration
	SettlePoll  time.Duration

	// Bugs is for negative tests only.
	Bugs Bugs
}

// Bugs switches on deliberately broken behaviour of the controller, so
// that tests can show a harness of the real components (internal/chaos)
// catching it. The zero value is correct behaviour; nothing outside tests
// may set a field.
type Bugs struct {
	// NoCatchUp skips every step's catch-up (the broken variant of
	// PROTOCOL.md §8 step 3): a key written before a grow from an odd
	// number of acceptors stays on a majority of the old ones only, which
	// a prepare quorum of the next configuration can miss.
	NoCatchUp bool
}

// DefaultControllerConfig returns the defaults of every tunable field
// (Self is the caller's). A zero or negative field of a ControllerConfig
// given to NewController takes its value from here.
func DefaultControllerConfig() ControllerConfig {
	return ControllerConfig{
		PageKeys:    256,
		RetryBase:   50 * time.Millisecond,
		RetryMax:    2 * time.Second,
		CallTimeout: 5 * time.Second,
		SettlePoll:  20 * time.Millisecond,
	}
}

func (c *ControllerConfig) defaults() {
	def := DefaultControllerConfig()
	if c.PageKeys <= 0 {
		c.PageKeys = def.PageKeys
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.RetryBase, def.RetryBase}, {&c.RetryMax, def.RetryMax}, {&c.CallTimeout, def.CallTimeout}, {&c.SettlePoll, def.SettlePoll}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
}

// Controller runs membership changes from one node: it plans a change,
// persists it, and applies its steps to every node, each step idempotent and
// retried until it succeeds; after a crash, Resume continues where it stopped.
// One change runs at a time.
type Controller struct {
	cfg   ControllerConfig
	peers Peers
	rw    Rewriter
	store ChangeStore
	local func() Membership // the membership this node uses now
	log   *slog.Logger

	mu      sync.Mutex
	change  *Change       // in progress, nil if none
	done    chan struct{} // closed when the change in progress ends
	lastErr error         // the outcome of the last change (nil: success)
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// ErrChangeInProgress: a change is already running; wait for it.
var ErrChangeInProgress = errors.New("caspaxos/membership: a membership change is already in progress")

// NewController returns a controller; Resume continues a persisted change.
// local returns the node's current membership, from which a change is planned.
func NewController(cfg ControllerConfig, peers Peers, rw Rewriter, store ChangeStore, local func() Membership, log *slog.Logger) (*Controller, error) {
	if peers == nil || rw == nil || store == nil || local == nil || log == nil {
		return nil, errors.New("caspaxos/membership: NewController needs peers, a rewriter, a store, the local membership and a logger")
	}
	cfg.defaults()
	return &Controller{cfg: cfg, peers: peers, rw: rw, store: store, local: local,
		log: log.With(slog.String("component", "membership")), stop: make(chan struct{})}, nil
}

// Resume continues the change a previous run of this node persisted, if any.
func (c *Controller) Resume() error {
	ch, err := c.store.LoadChange()
	if err != nil || ch == nil {
		return err
	}
	c.log.Info("resuming membership change", slog.String("op", ch.Op), slog.String("target", ch.Target.Name), slog.Int("step", ch.Next))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.launch(ch)
	return nil
}

// Add starts adding x and returns a channel closed when the change ends.
func (c *Controller) Add(x Member) (<-chan struct{}, error) {
	return c.begin("add", x, func(cur Membership) ([]Step, error) { return PlanAdd(cur, x) })
}

// Remove starts removing the member called name.
func (c *Controller) Remove(name string) (<-chan struct{}, error) {
	return c.begin("remove", Member{Name: name}, func(cur Membership) ([]Step, error) { return PlanRemove(cur, name) })
}

func (c *Controller) begin(op string, target Member, plan func(Membership) ([]Step, error)) (<-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.change != nil {
		return nil, ErrChangeInProgress
	}
	cur := c.local()
	steps, err := plan(cur)
	if err != nil {
		return nil, err
	}
	if op == "remove" {
		target, _ = cur.ByName(target.Name)
	}
	ch := &Change{ID: fmt.Sprintf("%016x", rand.Uint64()), Op: op, Target: target, From: cur.Clone(), Steps: steps}
	if err := c.store.SaveChange(ch); err != nil {
		return nil, err
	}
	c.launch(ch)
	return c.done, nil
}

// launch runs ch in the background (mu held).
func (c *Controller) launch(ch *Change) {
	c.change, c.lastErr = ch, nil
	c.done = make(chan struct{})
	done := c.done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := c.run(ch)
		c.mu.Lock()
		c.change, c.lastErr = nil, err
		c.mu.Unlock()
		close(done)
	}()
}

// Status returns a copy of the change in progress (nil if none) and the
// outcome of the last change that ended.
func (c *Controller) Status() (*Change, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.change.Clone(), c.lastErr
}

// Stored says whether the controller's store holds a change, and its ID
// (controls nil: the store could not be read). It reads the store, not the
// controller's memory: a change is stored before it holds any node and
// until it freed them all, also across a restart before Resume.
func (c *Controller) Stored() (controls *bool, id string) {
	ch, err := c.store.LoadChange()
	if err != nil {
		return nil, ""
	}
	stored := ch != nil
	if ch != nil {
		id = ch.ID
	}
	return &stored, id
}

// Stop abandons the change in progress (it stays persisted: Resume
// continues it) and waits for the controller's goroutine.
func (c *Controller) Stop() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// errStopped ends run when Stop was called.
var errStopped = errors.New("caspaxos/membership: controller stopped")

// run drives ch to its end, retrying each failed phase after a backoff.
func (c *Controller) run(ch *Change) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(c.cfg.Self.ID)))
	retry := 0
	for {
		finished, err := c.advance(ctx, ch)
		if err == nil && finished {
			if err := c.store.SaveChange(nil); err != nil {
				return err
			}
			c.log.Info("membership change done", slog.String("op", ch.Op), slog.String("target", ch.Target.Name))
			return nil
		}
		if err == nil {
			retry = 0
			continue
		}
		if errors.Is(err, errAbort) {
			c.log.Warn("membership change abandoned", slog.Any("error", err))
			_ = c.store.SaveChange(nil)
			return err
		}
		retry++
		c.log.Debug("membership step failed; retrying", slog.Int("retry", retry), slog.Any("error", err))
		c.mu.Lock()
		ch.Error = err.Error()
		c.mu.Unlock()
		t := time.NewTimer(server.Backoff(c.cfg.RetryBase, c.cfg.RetryMax, retry, rng))
		select {
		case <-c.stop:
			t.Stop()
			return errStopped
		case <-t.C:
		}
	}
}

// errAbort: the change cannot go on (another controller's change holds
// the nodes, or a newer membership replaced the one it was planned from);
// nothing of it was applied.
var errAbort = errors.New("caspaxos/membership: membership change abandoned")

// ErrMembershipHeld, ErrMembershipOlder and ErrMembershipConflict from a
// node at pause mean the change cannot go on.
func abandons(err error) bool {
	return errors.Is(err, ErrMembershipHeld) || errors.Is(err, ErrMembershipOlder) || errors.Is(err, ErrMembershipConflict)
}

// advance runs the next phase of ch and persists the progress. It reports
// true when the change is complete.
func (c *Controller) advance(ctx context.Context, ch *Change) (bool, error) {
	switch {
	case ch.Abandon != "":
		return false, c.release(ctx, ch)
	case !ch.Paused:
		return false, c.pause(ctx, ch)
	case ch.Next == len(ch.Steps):
		return true, c.finish(ctx, ch)
	}
	s := ch.Steps[ch.Next]
	var err error
	var done func(*Change)
	switch {
	case s.CopyFences && !ch.FencesCopied:
		err = c.copyFences(ctx, ch)
		done = func(n *Change) { n.FencesCopied = true }
	case !ch.Applied:
		err = c.apply(ctx, ch, NodeState{Membership: s.Membership, Changing: true, Controller: c.cfg.Self.Name, ChangeID: ch.ID})
		done = func(n *Change) { n.Applied = true }
	case !ch.Settled:
		err = c.settle(ctx, ch, s.Membership.Version())
		done = func(n *Change) { n.Settled = true }
	case s.CatchUp && !ch.CaughtUp && !c.cfg.Bugs.NoCatchUp:
		return false, c.catchUpPage(ctx, ch) // commits each page
	default:
		c.log.Info("membership step done", slog.Uint64("version", s.Membership.Version()))
		done = func(n *Change) {
			n.Next++
			n.FencesCopied, n.Applied, n.Settled, n.CaughtUp = false, false, false, false
			n.CatchUp = CatchUp{}
		}
	}
	if err != nil {
		return false, err
	}
	return false, c.commit(ch, done)
}

// commit persists ch as fn changes it, and only once that is durable makes
// it ch (under mu: Status reads it). The progress a controller acts on
// never runs ahead of the store: when a save fails, the phase is retried
// (each is idempotent) instead of the next one begun. Otherwise a
// controller whose store failed could take the nodes through later steps,
// and one resumed from the store would re-apply a step they passed: a node
// refuses an older membership, so that change would be retried forever.
// Nodes are at most one phase ahead of the stored progress, and redoing
// that phase is harmless.
func (c *Controller) commit(ch *Change, fn func(*Change)) error {
	next := ch.Clone()
	fn(next)
	next.Error = ""
	if err := c.store.SaveChange(next); err != nil {
		return fmt.Errorf("persisting the change's progress: %w", err)
	}
	c.mu.Lock()
	*ch = *next
	c.mu.Unlock()
	return nil
}

// involved returns the nodes a step must reach: those of the membership
// before it and of its own; optional is the removed node, which may be gone
// for good (a lost disk), so that it is tried but not waited for.
func (c *Controller) involved(ch *Change, step int) (required []Member, optional []Member) {
	prev := ch.From
	if step > 0 {
		prev = ch.Steps[step-1].Membership
	}
	seen := map[protocol.NodeID]bool{}
	add := func(ms []Member) {
		for _, m := range ms {
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			if ch.Op == "remove" && m.ID == ch.Target.ID {
				optional = append(optional, m)
			} else {
				required = append(required, m)
			}
		}
	}
	add(prev.Nodes)
	if step < len(ch.Steps) {
		add(ch.Steps[step].Membership.Nodes)
	} else {
		// The end of the change: the node added must take it; the node
		// removed is told too (optional), so that it knows it is over.
		add([]Member{ch.Target})
	}
	return required, optional
}

// pause tells every node a change is in progress (deletion GC waits), with
// the membership it uses now. A node held by another controller's change
// refuses, as does one that already uses a newer membership; the change is
// then abandoned before anything was applied (see release).
func (c *Controller) pause(ctx context.Context, ch *Change) error {
	req, opt := c.pauseSet(ch)
	st := NodeState{Membership: ch.From, Changing: true, Controller: c.cfg.Self.Name, ChangeID: ch.ID}
	var mu sync.Mutex
	var refused []protocol.NodeID
	err := c.each(ctx, req, opt, func(ctx context.Context, m Member) error {
		err := c.peers.SetState(ctx, m, st)
		if abandons(err) {
			mu.Lock()
			refused = append(refused, m.ID)
			mu.Unlock()
		}
		return err
	})
	if err != nil {
		if abandons(err) {
			c.log.Warn("membership change cannot go on; releasing the nodes it paused", slog.Any("error", err))
			slices.Sort(refused)
			return c.commit(ch, func(n *Change) { n.Abandon, n.Refused = err.Error(), refused })
		}
		return fmt.Errorf("pausing deletion GC: %w", err)
	}
	return c.commit(ch, func(n *Change) { n.Paused = true })
}

// pauseSet returns the nodes pause tells: those of the membership before
// the change (a removed node optional: it may be gone for good), and the
// node to be added.
func (c *Controller) pauseSet(ch *Change) (required, optional []Member) {
	required, optional = c.involved(ch, 0)
	if ch.Op == "add" && !slices.ContainsFunc(required, func(m Member) bool { return m.ID == ch.Target.ID }) {
		required = append(required, ch.Target)
	}
	return required, optional
}

// release ends an abandoned change: every node its pause told, but those
// that refused it (Change.Refused), is told that no change is in progress,
// waiting for members that are down as any phase does; the node to be
// added or removed is tried but not waited for (it may be gone for good).
// Left held, the nodes would refuse every other controller's change for
// good, and their deletion GC would wait for good: two controllers that
// began at once each held some nodes and were refused by the others.
func (c *Controller) release(ctx context.Context, ch *Change) error {
	req, opt := c.pauseSet(ch)
	var required, optional []Member
	for _, m := range append(req, opt...) {
		switch {
		case slices.Contains(ch.Refused, m.ID):
		case m.ID == ch.Target.ID:
			optional = append(optional, m)
		default:
			required = append(required, m)
		}
	}
	st := NodeState{Membership: ch.From, Controller: c.cfg.Self.Name, ChangeID: ch.ID}
	err := c.each(ctx, required, optional, func(ctx context.Context, m Member) error {
		if err := c.peers.SetState(ctx, m, st); err != nil && !abandons(err) {
			return err
		}
		return nil // released, or held by another change or past ch.From: not ours
	})
	if err != nil {
		return fmt.Errorf("releasing the nodes of an abandoned change: %w", err)
	}
	return fmt.Errorf("%w: %s", errAbort, ch.Abandon)
}

// finish gives every node the final membership with no change in progress.
func (c *Controller) finish(ctx context.Context, ch *Change) error {
	final := ch.Steps[len(ch.Steps)-1].Membership
	req, opt := c.involved(ch, len(ch.Steps))
	return c.each(ctx, req, opt, func(ctx context.Context, m Member) error {
		return c.peers.SetState(ctx, m, NodeState{Membership: final, Controller: c.cfg.Self.Name, ChangeID: ch.ID})
	})
}

// copyFences raises the joining acceptor's GC age fences to the highest of
// the current acceptors', so that a message fenced there cannot land on it.
// A joiner that enters a prepare set without a catch-up must hold no
// registers (see checkEmptyJoiner).
func (c *Controller) copyFences(ctx context.Context, ch *Change) error {
	if !ch.Steps[ch.Next].CatchUp {
		if err := c.checkEmptyJoiner(ctx, ch); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	var got []Fences
	from := ch.From
	if ch.Next > 0 {
		from = ch.Steps[ch.Next-1].Membership
	}
	_ = c.each(ctx, nil, from.Nodes, func(ctx context.Context, m Member) error {
		f, err := c.peers.Fences(ctx, m)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, f)
		return nil
	})
	if answered := len(got); answered < len(from.Config.AcceptSet)/2+1 {
		return fmt.Errorf("copying GC fences: %d of %d acceptors answered", answered, len(from.Config.AcceptSet))
	}
	all := protocol.MergeJoinFences(got...)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	if err := c.peers.SetFences(ctx, ch.Target, all); err != nil {
		return fmt.Errorf("copying GC fences to %s: %w", ch.Target.Name, err)
	}
	return nil
}

// apply gives every node st.
func (c *Controller) apply(ctx context.Context, ch *Change, st NodeState) error {
	req, opt := c.involved(ch, ch.Next)
	err := c.each(ctx, req, opt, func(ctx context.Context, m Member) error { return c.peers.SetState(ctx, m, st) })
	if err != nil {
		return fmt.Errorf("configuration %d: %w", st.Membership.Version(), err)
	}
	return nil
}

// settle waits until every node's proposer settled on version.
func (c *Controller) settle(ctx context.Context, ch *Change, version uint64) error {
	req, _ := c.involved(ch, ch.Next)
	return c.each(ctx, req, nil, func(ctx context.Context, m Member) error {
		tick := time.NewTicker(c.cfg.SettlePoll)
		defer tick.Stop()
		for {
			ok, err := c.peers.Settled(ctx, m, version)
			if err != nil || ok {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not settle on configuration %d: %w", m.Name, version, ctx.Err())
			case <-tick.C:
			}
		}
	})
}

// optionalCallTimeout bounds a call to an optional node (a node being
// removed) below CallTimeout: such a node is often gone for good, and a
// step should not wait long for a reply it does not need.
const optionalCallTimeout = time.Second

// each runs fn on every node at once, each call within CallTimeout. It fails
// if fn failed on a required node; failures on optional nodes are ignored.
func (c *Controller) each(ctx context.Context, required, optional []Member, fn func(context.Context, Member) error) error {
	all := append(slices.Clone(required), optional...)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, m := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := c.cfg.CallTimeout
			if i >= len(required) {
				d = min(d, optionalCallTimeout)
			}
			cctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			if err := fn(cctx, m); err != nil && i < len(required) {
				errs[i] = fmt.Errorf("node %s: %w", m.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
