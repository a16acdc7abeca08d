package watch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// world is a cluster of three acceptors as the watch sees it: each
// acceptor's Publisher, the chosen state of every key (what a
// linearizable read returns), and switches to break streams.
type world struct {
	pubs  Local
	mu    sync.Mutex
	chose map[string]protocol.State
	ctr   uint64
	down  map[protocol.NodeID]bool // Open fails
	reads atomic.Int64
	confs atomic.Int64
}

func newWorld() *world {
	w := &world{pubs: Local{}, chose: map[string]protocol.State{}, down: map[protocol.NodeID]bool{}}
	for id := protocol.NodeID(1); id <= 3; id++ {
		w.pubs[id] = NewPublisher(0, nil)
	}
	return w
}

func (w *world) Open(ctx context.Context, id protocol.NodeID) (Stream, error) {
	w.mu.Lock()
	down := w.down[id]
	w.mu.Unlock()
	if down {
		return nil, errors.New("down")
	}
	return w.pubs.Open(ctx, id)
}

// accept makes acceptors ids accept st for key (hinting it); chosen: the
// state is chosen too.
func (w *world) accept(key string, st protocol.State, chosen bool, ids ...protocol.NodeID) {
	w.mu.Lock()
	w.ctr++
	b := protocol.Ballot{Counter: w.ctr, Proposer: 1}
	if chosen {
		w.chose[key] = st
	}
	w.mu.Unlock()
	for _, id := range ids {
		w.pubs[id].Accepted(key, b, st)
	}
}

// choose makes st chosen without any hint (the accepts that chose it
// reached acceptors whose streams are not open, or came before the hint
// was read).
func (w *world) choose(key string, st protocol.State) {
	w.mu.Lock()
	w.chose[key] = st
	w.mu.Unlock()
}

func (w *world) hub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 20 * time.Millisecond
	}
	if cfg.SettleDelay == 0 {
		cfg.SettleDelay = 5 * time.Millisecond
	}
	h, err := New(cfg, Deps{
		Config: func() protocol.Config { w.confs.Add(1); return protocol.Majority(1, 1, 2, 3) },
		Read: func(_ context.Context, key string) (protocol.State, error) {
			w.reads.Add(1)
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.chose[key], nil
		},
		List: func(_ context.Context, prefix string, emit func(string, protocol.State, bool) error) error {
			w.mu.Lock()
			var keys []string
			for k, st := range w.chose {
				if kv.PrefixShows(prefix, k) && st.Exists() { // as server/list does
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			states := make([]protocol.State, len(keys))
			for i, k := range keys {
				states[i] = w.chose[k]
			}
			w.mu.Unlock()
			for i, k := range keys {
				if err := emit(k, states[i], false); err != nil {
					return err
				}
			}
			return nil
		},
		Source: w,
		Log:    servertest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// allOpen waits until all three streams are open: the tests' accepts by
// one acceptor must reach the hub.
func allOpen(t *testing.T, h *Hub) {
	t.Helper()
	servertest.WaitFor(t, "every stream open", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, s := range h.streams {
			if s.acked > 0 {
				n++
			}
		}
		return n == 3
	})
}

func live(v string, version uint64) protocol.State {
	return protocol.State{Value: []byte(v), Version: version}
}

// collector gathers a watcher's events per key and checks that versions
// only rise.
type collector struct {
	t    *testing.T
	mu   sync.Mutex
	last map[string]Event
	all  []Event
}

func collect(t *testing.T, wa *Watcher) *collector {
	c := &collector{t: t, last: map[string]Event{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			evs, err := wa.Next(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			for _, ev := range evs {
				if prev, ok := c.last[ev.Key]; ok && ev.State.Version != 0 && ev.State.Version <= prev.State.Version {
					t.Errorf("key %s went from version %d to %d", ev.Key, prev.State.Version, ev.State.Version)
				}
				c.last[ev.Key] = ev
				c.all = append(c.all, ev)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) has(key string, st protocol.State) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev, ok := c.last[key]
	return ok && ev.State.Equal(st)
}

func (c *collector) saw(key string, st protocol.State) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.all {
		if ev.Key == key && ev.State.Equal(st) {
			return true
		}
	}
	return false
}

func (c *collector) wait(key string, st protocol.State) {
	c.t.Helper()
	servertest.WaitFor(c.t, fmt.Sprintf("%s to reach %s", key, st), func() bool { return c.has(key, st) })
}

func TestWatchKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		bugs Bugs
	}{{"correct", Bugs{}}, {"raw accepts", Bugs{RawAccepts: true}}} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld()
			w.choose("k", live("a", 1))
			h := w.hub(t, Config{Bugs: tt.bugs})
			wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c := collect(t, wa)
			c.wait("k", live("a", 1))
			allOpen(t, h)

			// A minority accept that is never chosen, then a chosen state.
			w.accept("k", live("minority", 2), false, 1)
			servertest.WaitFor(t, "the hint to reach the hub", func() bool {
				h.mu.Lock()
				defer h.mu.Unlock()
				ks := h.keys["k"]
				return ks.hinted || ks.top >= 2
			})
			w.accept("k", live("b", 3), true, 1, 2)
			c.wait("k", live("b", 3))
			if c.saw("k", live("minority", 2)) != tt.bugs.RawAccepts {
				t.Fatalf("delivered the minority accept: %v (broken variant: %v)", c.saw("k", live("minority", 2)), tt.bugs.RawAccepts)
			}
		})
	}
}

// A hint that arrives before its state is chosen is read again until the
// read shows it: the last state arrives although no further hint does.
func TestWatchHintBeforeChosen(t *testing.T) {
	w := newWorld()
	h := w.hub(t, Config{})
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	allOpen(t, h)
	w.accept("k", live("x", 1), false, 1) // acceptor 1 accepted first
	servertest.WaitFor(t, "a read of the hint", func() bool { return w.reads.Load() >= 2 })
	w.choose("k", live("x", 1)) // the others' accepts chose it, unhinted
	c.wait("k", live("x", 1))
}

// While too few streams are open the hub polls, and delivers changes that
// produced no hint; an idle hub with whole streams reads nothing.
func TestWatchResyncAndIdle(t *testing.T) {
	w := newWorld()
	w.down[2], w.down[3] = true, true
	h := w.hub(t, Config{OpenTimeout: time.Millisecond})
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	if h.Whole() {
		t.Fatal("whole with one stream of three")
	}
	w.choose("k", live("polled", 4))
	c.wait("k", live("polled", 4))

	w.mu.Lock()
	w.down[2] = false
	w.mu.Unlock()
	servertest.WaitFor(t, "whole streams (1 and 2)", h.Whole)
	servertest.WaitFor(t, "the resync loop and its reads to end", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.resync && len(h.queue) == 0 && !h.keys["k"].queued
	})
	reads := w.reads.Load()
	confs := w.confs.Load()
	servertest.WaitFor(t, "ten resync intervals", func() bool { return w.confs.Load() >= confs+10 })
	if got := w.reads.Load(); got != reads {
		t.Fatalf("an idle watch with whole streams read %d times", got-reads)
	}
	w.accept("k", live("hinted", 5), true, 1, 2)
	c.wait("k", live("hinted", 5))
}

func TestWatchPrefix(t *testing.T) {
	w := newWorld()
	w.choose("p/a", live("a", 1))
	w.choose("p/b", live("b", 2))
	w.choose("q", live("q", 1))
	h := w.hub(t, Config{})
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	c.wait("p/a", live("a", 1))
	c.wait("p/b", live("b", 2))
	allOpen(t, h)

	w.accept("p/c", live("c", 1), true, 2, 3)
	c.wait("p/c", live("c", 1))
	tomb := protocol.State{Version: 3, Deleted: true}
	w.accept("p/a", tomb, true, 1, 3)
	c.wait("p/a", tomb)
	// p/b deleted and its tombstone collected, unhinted; a resync (an
	// overflow) re-lists the prefix and reads p/b: deleted, no version.
	w.choose("p/b", protocol.State{})
	h.mu.Lock()
	h.checkWhole(true)
	h.mu.Unlock()
	c.wait("p/b", protocol.State{Deleted: true})
	if c.saw("q", live("q", 1)) {
		t.Fatal("a key outside the prefix was delivered")
	}
	c.mu.Lock()
	if ev := c.last["p/b"]; ev.PrevVersion != 2 {
		t.Errorf("p/b's collected event says previous %d, want 2", ev.PrevVersion)
	}
	c.mu.Unlock()
}

// TestWatchEveryKeyHidesReserved: a watch of every key (prefix "") is
// never told of the cluster's own keys (kv.ReservedPrefix: auth state,
// leases, locks), stored before it began or accepted after; a watch of a
// reserved prefix (the node's own services) is.
func TestWatchEveryKeyHidesReserved(t *testing.T) {
	w := newWorld()
	secret := kv.ReservedPrefix + "auth/state"
	w.choose(secret, live("signing key", 1))
	w.choose("a", live("a", 1))
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 10*time.Second)
	every, err := h.Watch(ctx, Interest{Prefixes: []string{""}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, every)
	leases, err := h.Watch(ctx, Interest{Prefixes: []string{kv.ReservedPrefix}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, leases)
	allOpen(t, h)
	w.accept(secret, live("another key", 2), true, 1, 2, 3)
	r.wait(secret, live("another key", 2))
	w.accept("b", live("b", 1), true, 1, 2, 3)
	c.wait("b", live("b", 1))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.all {
		if kv.CheckClientKey(ev.Key) != nil {
			t.Fatalf("a watch of every key was told of reserved key %q: %+v", ev.Key, ev)
		}
	}
}

// A watcher resumed from a version is delivered only what is above it.
func TestWatchResume(t *testing.T) {
	w := newWorld()
	w.choose("k", live("a", 7))
	h := w.hub(t, Config{})
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}}, map[string]uint64{"k": 7})
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	allOpen(t, h)
	w.accept("k", live("b", 9), true, 1, 2)
	c.wait("k", live("b", 9))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.all) != 1 || c.all[0].PrevVersion != 7 || !c.all[0].Jump() {
		t.Fatalf("events %+v, want one jump from 7 to 9", c.all)
	}
}

// 10,000 watchers of one key on one node fit in bounded memory, and a
// slow watcher gets the latest state, not every state.
func TestWatchManyWatchers(t *testing.T) {
	w := newWorld()
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 60*time.Second)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 10_000
	ws := make([]*Watcher, n)
	for i := range ws {
		var err error
		if ws[i], err = h.Watch(ctx, Interest{Keys: []string{"k"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for v := uint64(1); v <= 100; v++ {
		w.accept("k", live(fmt.Sprint(v), v), true, 1, 2, 3)
	}
	for i, wa := range ws {
		var last Event
		for last.State.Version != 100 {
			evs, err := wa.Next(ctx)
			if err != nil {
				t.Fatalf("watcher %d: %v", i, err)
			}
			for _, ev := range evs {
				if ev.State.Version <= last.State.Version {
					t.Fatalf("watcher %d went from %d to %d", i, last.State.Version, ev.State.Version)
				}
				last = ev
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perWatcher := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("heap per watcher after 100 changes: %d bytes", perWatcher)
	if perWatcher > 4096 {
		t.Fatalf("each watcher holds %d bytes after 100 changes of its key: states are queued, not coalesced", perWatcher)
	}
	for _, wa := range ws {
		wa.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchers != 0 || len(h.keys) != 0 {
		t.Fatalf("after closing every watcher: %d watchers, %d keys", h.watchers, len(h.keys))
	}
}

// silentSource wraps a world's streams; once silent is set, its streams
// pass nothing on (a link cut without a reset) until their ctx ends.
type silentSource struct {
	w      *world
	silent atomic.Bool
	opens  atomic.Int64
}

func (s *silentSource) Open(ctx context.Context, id protocol.NodeID) (Stream, error) {
	s.opens.Add(1)
	st, err := s.w.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return &silentStream{Stream: st, ctx: ctx, src: s}, nil
}

type silentStream struct {
	Stream
	ctx context.Context
	src *silentSource
}

func (s *silentStream) Recv() (Batch, error) {
	if s.src.silent.Load() {
		<-s.ctx.Done()
		return Batch{}, s.ctx.Err()
	}
	return s.Stream.Recv()
}

// A stream that goes silent, without breaking, is taken as broken after
// StreamTimeout: the hub reopens it and resyncs meanwhile.
func TestWatchSilentStreamIsBroken(t *testing.T) {
	w := newWorld()
	src := &silentSource{w: w}
	h, err := New(Config{ResyncInterval: 20 * time.Millisecond, StreamTimeout: 2 * HeartbeatInterval}, Deps{
		Config: func() protocol.Config { return protocol.Majority(1, 1, 2, 3) },
		Read: func(_ context.Context, key string) (protocol.State, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.chose[key], nil
		},
		List:   func(context.Context, string, func(string, protocol.State, bool) error) error { return nil },
		Source: src,
		Log:    servertest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	allOpen(t, h)
	servertest.WaitFor(t, "the first resync to end", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.resync && len(h.queue) == 0 && !h.keys["k"].queued
	})
	opens := src.opens.Load()
	src.silent.Store(true)
	w.choose("k", live("unhinted", 1)) // its hints would be lost on the silent streams
	servertest.WaitFor(t, "the silent streams to be reopened", func() bool { return src.opens.Load() > opens })
	c.wait("k", live("unhinted", 1))
}

// A state published by a write of this node (an accept quorum answered
// it) reaches the watchers with no read and no hint.
func TestWatchPublish(t *testing.T) {
	w := newWorld()
	h := w.hub(t, Config{})
	wa, err := h.Watch(servertest.Ctx(t, 10*time.Second), Interest{Keys: []string{"k"}, Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	allOpen(t, h)
	servertest.WaitFor(t, "the first resync to end", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.resync && len(h.queue) == 0 && !h.keys["k"].queued
	})
	reads := w.reads.Load()
	h.Publish("k", live("written", 3))
	h.Publish("p/x", live("x", 1))
	h.Publish("other", live("o", 1)) // not watched: dropped
	h.Publish("k", protocol.State{}) // no version: never taken
	c.wait("k", live("written", 3))
	c.wait("p/x", live("x", 1))
	if got := w.reads.Load(); got != reads {
		t.Fatalf("publishing read %d times", got-reads)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys["other"] != nil {
		t.Fatal("an unwatched key's publication was kept")
	}
}

// WatchChanges: a prefix's keys start at their listed state, which is not
// delivered; a change and a deletion after it are, and a key created
// after it; Watch of the same prefix still delivers the listed state.
func TestWatchChanges(t *testing.T) {
	w := newWorld()
	w.choose("p/a", live("a", 1))
	w.choose("p/b", live("b", 2))
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 10*time.Second)
	wa, err := h.WatchChanges(ctx, Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wa)
	all, err := h.Watch(ctx, Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := collect(t, all)
	full.wait("p/a", live("a", 1))
	full.wait("p/b", live("b", 2))
	allOpen(t, h)

	w.accept("p/a", live("a2", 2), true, 1, 2, 3)
	c.wait("p/a", live("a2", 2))
	tomb := protocol.State{Version: 3, Deleted: true}
	w.accept("p/b", tomb, true, 1, 2, 3)
	c.wait("p/b", tomb)
	w.accept("p/c", live("c", 1), true, 1, 2, 3)
	c.wait("p/c", live("c", 1))
	if c.saw("p/a", live("a", 1)) || c.saw("p/b", live("b", 2)) {
		t.Fatalf("the listed states were delivered: %+v", c.all)
	}
}

// TestWatchChangesSkipsKnownPast: a changes-only watcher of a prefix that
// the hub already watches (so it knows the prefix's keys, a deleted one
// included) starts every known key at the state known, as a listed one:
// a key deleted before it began is not delivered to it.
func TestWatchChangesSkipsKnownPast(t *testing.T) {
	w := newWorld()
	w.choose("p/x", live("x", 5))
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 10*time.Second)
	all, err := h.Watch(ctx, Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := collect(t, all)
	full.wait("p/x", live("x", 5))
	allOpen(t, h)
	tomb := protocol.State{Version: 6, Deleted: true}
	w.accept("p/x", tomb, true, 1, 2, 3)
	full.wait("p/x", tomb)

	wc, err := h.WatchChanges(ctx, Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, wc)
	w.accept("p/y", live("y", 1), true, 1, 2, 3)
	c.wait("p/y", live("y", 1))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.all {
		if ev.Key == "p/x" {
			t.Fatalf("a changes-only watch begun after p/x's delete was told of it: %+v", ev)
		}
	}
}
