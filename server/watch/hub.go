package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Config configures a Hub.
type Config struct {
	// ResyncInterval is how often a node whose hint streams are not whole
	// re-reads every watched key and re-lists every watched prefix
	// (default 1s).
	ResyncInterval time.Duration
	// SettleDelay is the first wait before a hint that a read did not
	// confirm yet is read again; each further try doubles it (default
	// 100ms).
	SettleDelay time.Duration
	// SettleTries bounds the reads of one hint that stays unconfirmed (a
	// minority accept that is never chosen); default 6.
	SettleTries int
	// OpenTimeout bounds how long a new watch waits for the hint streams
	// to take its keys before its first read (default 2s). Past it the
	// read runs anyway, and the resync timer covers the streams missing.
	OpenTimeout time.Duration
	// StreamTimeout: a hint stream that carried nothing for this long, not
	// even a heartbeat (HeartbeatInterval), is taken as broken (a link cut
	// without a reset) and reopened; default 3s, at least twice
	// HeartbeatInterval.
	StreamTimeout time.Duration
	// ReadTimeout bounds one confirming read or resync listing (default 10s).
	ReadTimeout time.Duration
	// Readers is how many confirming reads run at once (default 8).
	Readers int
	// MaxPendingHints bounds the hints an acceptor keeps for one
	// subscriber, the latest per key, before it tells it to resync
	// (default 4096).
	MaxPendingHints int
	// MaxWatchers bounds the watchers of one node (default 100,000).
	MaxWatchers int

	// Bugs is for negative tests only.
	Bugs Bugs
}

// Bugs are deliberately broken behaviours, for internal/chaos only.
type Bugs struct {
	// RawAccepts delivers a hint's state straight from one acceptor's
	// accept, without the confirming read: watchers then see states that
	// a minority accepted and that were never chosen.
	RawAccepts bool
}

// DefaultConfig returns the defaults of every field.
func DefaultConfig() Config {
	return Config{
		ResyncInterval:  time.Second,
		SettleDelay:     100 * time.Millisecond,
		SettleTries:     6,
		OpenTimeout:     2 * time.Second,
		StreamTimeout:   3 * HeartbeatInterval,
		ReadTimeout:     10 * time.Second,
		Readers:         8,
		MaxPendingHints: 4096,
		MaxWatchers:     100_000,
	}
}

func (c *Config) fill() error {
	def := DefaultConfig()
	for _, f := range []struct {
		name     string
		v        *time.Duration
		fallback time.Duration
	}{{"ResyncInterval", &c.ResyncInterval, def.ResyncInterval}, {"SettleDelay", &c.SettleDelay, def.SettleDelay},
		{"OpenTimeout", &c.OpenTimeout, def.OpenTimeout}, {"ReadTimeout", &c.ReadTimeout, def.ReadTimeout},
		{"StreamTimeout", &c.StreamTimeout, def.StreamTimeout}} {
		if *f.v < 0 {
			return fmt.Errorf("caspaxos/watch: %s is %v; it must not be negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.fallback
		}
	}
	if c.StreamTimeout < 2*HeartbeatInterval {
		return fmt.Errorf("caspaxos/watch: StreamTimeout is %v; it must be at least twice the heartbeat, %v", c.StreamTimeout, 2*HeartbeatInterval)
	}
	for _, f := range []struct {
		name     string
		v        *int
		fallback int
	}{{"SettleTries", &c.SettleTries, def.SettleTries}, {"Readers", &c.Readers, def.Readers},
		{"MaxPendingHints", &c.MaxPendingHints, def.MaxPendingHints}, {"MaxWatchers", &c.MaxWatchers, def.MaxWatchers}} {
		if *f.v < 0 {
			return fmt.Errorf("caspaxos/watch: %s is %d; it must not be negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.fallback
		}
	}
	return nil
}

// Deps is what a Hub reaches through: the node's configuration, its
// linearizable reads and listings, and the hint streams.
type Deps struct {
	// Config returns the node's current acceptor configuration.
	Config func() protocol.Config
	// Read reads one key linearizably (the node's get).
	Read func(ctx context.Context, key string) (protocol.State, error)
	// List lists the live keys of a prefix (server/list, every page),
	// calling emit for each; omitted: its value was left out (the Hub
	// reads such a key instead).
	List func(ctx context.Context, prefix string, emit func(key string, st protocol.State, omitted bool) error) error
	// Source opens the hint streams.
	Source Source
	Log    *slog.Logger
}

// ErrTooManyWatchers: the node holds MaxWatchers watchers already.
var ErrTooManyWatchers = errors.New("caspaxos/watch: too many watchers on this node")

// Hub serves the watches of one node. See doc.go for its design.
type Hub struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	keys     map[string]*keyState
	prefixes map[string]map[*Watcher]struct{}
	watchers int
	streams  map[protocol.NodeID]*stream
	conf     protocol.Config // the configuration the streams follow
	seq      uint64          // the latest interest change
	acked    chan struct{}   // closed and replaced when a stream acks
	whole    bool
	resync   bool     // the resync loop runs
	breaks   uint64   // counts the times the streams broke or a resync was forced
	queue    []string // keys to read, each at most once (keyState.queued)
	work     chan struct{}
	closed   bool
}

// keyState is the hub's knowledge of one key that a watcher watches, by
// itself or under a prefix.
type keyState struct {
	state   protocol.State // the latest confirmed state
	top     uint64         // the highest version confirmed (state may be absent after it)
	gen     uint64         // counts changes of state
	keyRefs map[*Watcher]struct{}
	queued  bool // in Hub.queue or being read
	again   bool // read once more after the read in flight
	hint    protocol.State
	hinted  bool // hint waits for a read that shows it
	tries   int
}

// stream is the hub's end of one acceptor's hint stream.
type stream struct {
	cancel context.CancelFunc
	acked  uint64   // the interest change it took last; 0: not open
	open   bool     // Recv is running: changes go to outbox
	outbox []change // interest changes not sent yet, in order
	kick   chan struct{}
}

// change is one numbered interest change.
type change struct {
	seq         uint64
	add, remove Interest
}

// New starts a Hub.
func New(cfg Config, deps Deps) (*Hub, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if deps.Config == nil || deps.Read == nil || deps.List == nil || deps.Source == nil {
		return nil, errors.New("caspaxos/watch: Deps needs Config, Read, List and Source")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &Hub{cfg: cfg, deps: deps, log: log, ctx: ctx, stop: stop,
		keys: map[string]*keyState{}, prefixes: map[string]map[*Watcher]struct{}{},
		streams: map[protocol.NodeID]*stream{}, acked: make(chan struct{}), work: make(chan struct{}, 1),
		seq: 1} // a stream's first ack, of the whole interest, is at least 1
	h.wg.Add(1)
	go h.followConfig()
	for range cfg.Readers {
		h.wg.Add(1)
		go h.reader()
	}
	return h, nil
}

// Close stops the hub: its streams, reads and watchers (Next answers
// ErrClosed).
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	var ws []*Watcher
	for _, ks := range h.keys {
		for w := range ks.keyRefs {
			ws = append(ws, w)
		}
	}
	for _, set := range h.prefixes {
		for w := range set {
			ws = append(ws, w)
		}
	}
	h.mu.Unlock()
	h.stop()
	h.wg.Wait()
	for _, w := range ws {
		w.fail(ErrClosed)
	}
}

// Watch starts a watcher of in: its keys from the versions in from (a
// key missing from it: from the start), its prefixes from their current
// state (a prefix watcher resumes by relisting). Its first events are the
// current state of its keys (above from) and of every live key of its
// prefixes; then every change, coalesced per key. The hint streams take
// its interest before the first read (bounded by OpenTimeout).
func (h *Hub) Watch(ctx context.Context, in Interest, from map[string]uint64) (*Watcher, error) {
	return h.watch(ctx, in, from, false)
}

// WatchChanges is Watch whose prefixes deliver only changes: each key the
// prefix's listing returns starts at the state listed, which is not
// delivered, so that the first events of a prefix are the changes after
// the listing saw each key (etcd's watch of a range at the current
// revision). A key deleted before the listing is not delivered; one
// deleted after it is, since the hint streams were open before it.
func (h *Hub) WatchChanges(ctx context.Context, in Interest, from map[string]uint64) (*Watcher, error) {
	return h.watch(ctx, in, from, true)
}

func (h *Hub) watch(ctx context.Context, in Interest, from map[string]uint64, changes bool) (*Watcher, error) {
	if in.empty() {
		return nil, errors.New("caspaxos/watch: a watch needs a key or a prefix")
	}
	w := &Watcher{h: h, in: in, changes: changes, marks: map[string]protocol.WatchMark{}, known: map[string]protocol.State{}, pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	for k, v := range from {
		w.marks[k] = protocol.WatchMark{Version: v}
	}
	seq, err := h.add(w)
	if err != nil {
		return nil, err
	}
	h.waitStreams(ctx, seq)
	for _, k := range in.Keys {
		h.want(k)
	}
	for _, p := range in.Prefixes {
		if err := h.relist(ctx, p, w, changes); err != nil {
			w.Close()
			return nil, fmt.Errorf("caspaxos/watch: listing %q: %w", p, err)
		}
	}
	return w, nil
}

// add registers w and sends its interest to the streams; it returns the
// interest change's number.
func (h *Hub) add(w *Watcher) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, ErrClosed
	}
	if h.watchers >= h.cfg.MaxWatchers {
		return 0, ErrTooManyWatchers
	}
	h.watchers++
	var add Interest
	for _, k := range w.in.Keys {
		ks := h.key(k)
		if len(ks.keyRefs) == 0 {
			add.Keys = append(add.Keys, k)
		}
		ks.keyRefs[w] = struct{}{}
		if ks.gen > 0 {
			w.pending[k] = struct{}{}
		}
	}
	for _, p := range w.in.Prefixes {
		if h.prefixes[p] == nil {
			h.prefixes[p] = map[*Watcher]struct{}{}
			add.Prefixes = append(add.Prefixes, p)
		}
		h.prefixes[p][w] = struct{}{}
		for k, ks := range h.keys { // its keys known already: deliver them too
			switch {
			case !kv.PrefixShows(p, k) || ks.gen == 0:
			case w.changes:
				// Only changes: the key starts at the state known now,
				// as a key the listing returns does, and a key deleted
				// before the watch began is not delivered.
				w.start(k, ks.state, false)
			default:
				w.pending[k] = struct{}{}
			}
		}
	}
	h.ensureStreams()
	if add.empty() {
		return h.seq, nil
	}
	return h.change(add, Interest{}), nil
}

// key returns the state of k, created if needed. Called under mu.
func (h *Hub) key(k string) *keyState {
	ks := h.keys[k]
	if ks == nil {
		ks = &keyState{keyRefs: map[*Watcher]struct{}{}}
		h.keys[k] = ks
	}
	return ks
}

// covered reports whether a prefix watcher watches k. Called under mu.
func (h *Hub) covered(k string) bool {
	for p := range h.prefixes {
		if kv.PrefixShows(p, k) {
			return true
		}
	}
	return false
}

// remove drops w. Called by Watcher.Close.
func (h *Hub) remove(w *Watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.watchers--
	var rm Interest
	for _, k := range w.in.Keys {
		if ks := h.keys[k]; ks != nil {
			delete(ks.keyRefs, w)
			if len(ks.keyRefs) == 0 {
				rm.Keys = append(rm.Keys, k)
			}
		}
	}
	for _, p := range w.in.Prefixes {
		set := h.prefixes[p]
		delete(set, w)
		if len(set) == 0 {
			delete(h.prefixes, p)
			rm.Prefixes = append(rm.Prefixes, p)
		}
	}
	// Only keys that nobody else watches now can be forgotten: the
	// watcher's own keys, and the keys under a prefix it was the last to
	// watch (a key being read forgets itself when its read ends). Not a
	// sweep of every key against every prefix on every close.
	for _, k := range w.in.Keys {
		if ks := h.keys[k]; ks != nil {
			h.forget(k, ks)
		}
	}
	if len(rm.Prefixes) > 0 {
		for k, ks := range h.keys {
			for _, p := range rm.Prefixes {
				if kv.PrefixShows(p, k) {
					h.forget(k, ks)
					break
				}
			}
		}
	}
	if !rm.empty() {
		h.change(Interest{}, rm)
	}
}

// interest is everything watched. Called under mu.
func (h *Hub) interest() Interest {
	var in Interest
	for k, ks := range h.keys {
		if len(ks.keyRefs) > 0 {
			in.Keys = append(in.Keys, k)
		}
	}
	for p := range h.prefixes {
		in.Prefixes = append(in.Prefixes, p)
	}
	return in
}

// change numbers an interest change and sends it to every open stream
// (a stream that opens later gets the whole interest). Called under mu.
func (h *Hub) change(add, remove Interest) uint64 {
	h.seq++
	for _, s := range h.streams {
		if s.open {
			s.outbox = append(s.outbox, change{seq: h.seq, add: add, remove: remove})
			kick(s.kick)
		}
	}
	return h.seq
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitStreams waits until enough streams took interest change seq that
// they are whole for it, or OpenTimeout or ctx ends.
func (h *Hub) waitStreams(ctx context.Context, seq uint64) {
	t := time.NewTimer(h.cfg.OpenTimeout)
	defer t.Stop()
	for {
		h.mu.Lock()
		var took []protocol.NodeID
		for id, s := range h.streams {
			if s.acked >= seq {
				took = append(took, id)
			}
		}
		ok := h.closed || protocol.HintsWhole(h.conf, took)
		ch := h.acked
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// ensureStreams opens a stream to every member of the accept set it has
// none with, and closes those to acceptors outside it, when the
// configuration changed. Called under mu.
func (h *Hub) ensureStreams() {
	conf := h.deps.Config()
	if conf.Version == h.conf.Version && len(h.streams) > 0 {
		return
	}
	changed := h.conf.Version != 0 && conf.Version != h.conf.Version
	h.conf = conf.Clone()
	for id, s := range h.streams {
		if !slices.Contains(conf.AcceptSet, id) {
			s.cancel()
			delete(h.streams, id)
		}
	}
	for _, id := range conf.AcceptSet {
		if h.streams[id] == nil {
			ctx, cancel := context.WithCancel(h.ctx)
			s := &stream{cancel: cancel, kick: make(chan struct{}, 1)}
			h.streams[id] = s
			h.wg.Add(1)
			go h.runStream(ctx, id, s)
		}
	}
	h.checkWhole(changed)
}

// checkWhole recomputes whether the streams are whole and starts the
// resync loop if they are not, or if force (a configuration change: a
// state may have been chosen by acceptors the streams did not follow).
// Called under mu.
func (h *Hub) checkWhole(force bool) {
	var open []protocol.NodeID
	for id, s := range h.streams {
		if s.acked > 0 {
			open = append(open, id)
		}
	}
	h.whole = len(h.conf.AcceptSet) > 0 && protocol.HintsWhole(h.conf, open)
	if !h.whole || force {
		h.breaks++
	}
	if (!h.whole || force) && !h.resync && !h.closed {
		h.resync = true
		h.wg.Add(1)
		go h.resyncLoop()
	}
}

// Whole reports whether the hint streams are whole (for tests and metrics).
func (h *Hub) Whole() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.whole
}
