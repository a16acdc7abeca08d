package watch

import (
	"context"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// hubAt waits until the hub's confirmed state of key is st.
func hubAt(t *testing.T, h *Hub, key string, st protocol.State) {
	t.Helper()
	servertest.WaitFor(t, key+" confirmed at "+st.String(), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		ks := h.keys[key]
		return ks != nil && ks.gen > 0 && ks.state.Equal(st)
	})
}

// take1 runs Next once and wants exactly one event, of key in state st.
func take1(t *testing.T, wa *Watcher, key string, st protocol.State) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := wa.Next(ctx)
	if err != nil || len(evs) != 1 || evs[0].Key != key || !evs[0].State.Equal(st) {
		t.Fatalf("want one event of %s at %s; got %+v, %v", key, st, evs, err)
	}
	return evs[0]
}

// settle runs one pass of the watcher's pending keys without waiting,
// wanting no event: the watcher learns the states at its marks.
func settle(t *testing.T, wa *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if evs, err := wa.Next(ctx); len(evs) > 0 || err != context.Canceled {
		t.Fatalf("want no event; got %+v, %v", evs, err)
	}
}

func wantPrev(t *testing.T, ev Event, prev protocol.State) {
	t.Helper()
	if !ev.Prev.Equal(prev) {
		t.Fatalf("event of %s at %s: Prev %s, want %s", ev.Key, ev.State, ev.Prev, prev)
	}
}

// TestWatchPrev: each event's Prev is the state the watcher knew last of
// its key: none at first; the state delivered before; after a jump (two
// states merged) the last delivered one, older than the one just before;
// the live state before a deletion, also one whose tombstone was
// collected; a deletion before a put again.
func TestWatchPrev(t *testing.T) {
	w := newWorld()
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 10*time.Second)
	wa, err := h.Watch(ctx, Interest{Keys: []string{"k"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := live("a", 1), live("b", 2), live("d", 4)
	tomb := protocol.State{Version: 5, Deleted: true}
	steps := []struct {
		name     string
		chosen   []protocol.State // published in order before Next
		want     protocol.State
		prev     protocol.State
		collects bool // the tombstone is collected: the key reads absent
	}{
		{name: "first", chosen: []protocol.State{a}, want: a},
		{name: "put", chosen: []protocol.State{b}, want: b, prev: a},
		{name: "jump", chosen: []protocol.State{live("c", 3), d}, want: d, prev: b},
		{name: "delete", chosen: []protocol.State{tomb}, want: tomb, prev: d},
		{name: "put after delete", chosen: []protocol.State{live("e", 6)}, want: live("e", 6), prev: tomb},
		{name: "collected", collects: true, want: protocol.State{Deleted: true}, prev: live("e", 6)},
		{name: "created again", chosen: []protocol.State{live("f", 9)}, want: live("f", 9), prev: protocol.State{Deleted: true}},
	}
	for _, s := range steps {
		for _, st := range s.chosen {
			w.choose("k", st)
			h.Publish("k", st)
		}
		if s.collects {
			w.choose("k", protocol.State{})
			h.want("k")
			hubAt(t, h, "k", protocol.State{})
		}
		ev := take1(t, wa, "k", s.want)
		t.Logf("%s: %s, prev %s, jump %v", s.name, ev.State, ev.Prev, ev.Jump())
		wantPrev(t, ev, s.prev)
		if s.name == "jump" && (!ev.Jump() || ev.Prev.Version != ev.PrevVersion) {
			t.Fatalf("jump: %+v", ev)
		}
	}
}

// TestWatchPrevStart: the state a watch starts from is the Prev of its
// first event when the watcher knows it: the caller's read (Knew), or its
// own first read at the version it starts from, or a WatchChanges
// listing's state; a key created under the prefix after the listing has
// none, and neither has a key whose starting state the watcher never saw.
func TestWatchPrevStart(t *testing.T) {
	w := newWorld()
	a, b := live("a", 1), live("b", 2)
	w.choose("k", a)
	w.choose("p/x", a)
	h := w.hub(t, Config{})
	ctx := servertest.Ctx(t, 10*time.Second)

	knew, err := h.Watch(ctx, Interest{Keys: []string{"k"}}, map[string]uint64{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	knew.Knew("k", a)
	read, err := h.Watch(ctx, Interest{Keys: []string{"k"}}, map[string]uint64{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	hubAt(t, h, "k", a)
	settle(t, read)
	blind, err := h.Watch(ctx, Interest{Keys: []string{"k"}}, map[string]uint64{"k": 1})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := h.WatchChanges(ctx, Interest{Prefixes: []string{"p/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	w.choose("k", b)
	h.Publish("k", b)
	wantPrev(t, take1(t, knew, "k", b), a)
	wantPrev(t, take1(t, read, "k", b), a)
	// blind's first pass sees b already: it never saw the state at 1.
	wantPrev(t, take1(t, blind, "k", b), protocol.State{})

	w.choose("p/x", b)
	h.Publish("p/x", b)
	wantPrev(t, take1(t, pre, "p/x", b), a)
	tomb := protocol.State{Version: 3, Deleted: true}
	w.choose("p/x", tomb)
	h.Publish("p/x", tomb)
	wantPrev(t, take1(t, pre, "p/x", tomb), b)
	w.choose("p/y", a)
	h.Publish("p/y", a)
	wantPrev(t, take1(t, pre, "p/y", a), protocol.State{})
}
