package watch

import (
	"context"
	"slices"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
)

// Event is one delivery to a watcher: a key's state (protocol.WatchEvent).
type Event struct {
	Key string
	protocol.WatchEvent
	// Prev is the state of the key this watcher knew last before this
	// event: the state it delivered last, or the one it started from when
	// it knew it (a WatchChanges listing's, one its first read showed at
	// the version it started from, or one the caller read, Watcher.Knew).
	// Every such state was chosen. It is the state just before this event's
	// unless the event is a jump (states merged or passed over between
	// them): then Prev is older, and its version, below Version − 1, shows
	// it. The zero State: the watcher knew no state of the key before (it
	// started at version 0, or at a version whose state it never saw).
	// Deleted: the key was deleted or absent when last known.
	Prev protocol.State
}

// Watcher is one watch: keys and prefixes, with a mark per key
// (protocol.WatchMark). It holds no queue of states: a change marks its key
// pending, and Next reads the key's latest confirmed state from the hub,
// so a slow watcher gets the latest state of each key, not every state.
//
// Beside each mark it keeps the state the mark stands for, when it knows
// it (Event.Prev): one state per watched key, its value shared with the
// hub's until the key changes, and without the key's request table, so
// that a slow watcher pins at most one older value per key.
type Watcher struct {
	h  *Hub
	in Interest
	// changes: its prefixes deliver only changes (Hub.WatchChanges).
	changes bool

	mu      sync.Mutex
	marks   map[string]protocol.WatchMark
	known   map[string]protocol.State // the state at marks[k], when known
	pending map[string]struct{}
	wake    chan struct{}
	err     error
	closed  bool
}

// push marks k pending. Called under Hub.mu.
func (w *Watcher) push(k string) {
	w.mu.Lock()
	if w.err == nil {
		w.pending[k] = struct{}{}
	}
	w.mu.Unlock()
	kick(w.wake)
}

// start sets k's mark to st, the state a WatchChanges listing found (its
// value left out when omitted), unless it is past it already. Called
// under Hub.mu.
func (w *Watcher) start(k string, st protocol.State, omitted bool) {
	w.mu.Lock()
	if m := w.marks[k]; st.Version > m.Version {
		w.marks[k] = protocol.WatchMark{Version: st.Version}
		if omitted {
			delete(w.known, k) // learnt from the hub's read (take)
		} else {
			w.known[k] = knownState(st)
		}
	}
	w.mu.Unlock()
}

// Knew tells the watcher the state of key that the caller read
// linearizably and started the watch from (from[key] = st.Version), so
// that it is the Prev of the key's first event. It is taken only while
// the watcher's mark of key is at st.Version and knows no state: call it
// before the first Next.
func (w *Watcher) Knew(key string, st protocol.State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.known[key]; !ok && st.Version > 0 && w.marks[key].Version == st.Version {
		w.known[key] = knownState(st)
	}
}

// knownState is st as a watcher keeps it: without the request table,
// which no event shows and which may be far larger than the value.
func knownState(st protocol.State) protocol.State {
	return protocol.State{Value: st.Value, Version: st.Version, Deleted: st.Deleted, Created: st.Created, Attrs: st.Attrs}
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	kick(w.wake)
}

// Next waits for the next events, in key order: each pending key whose
// latest confirmed state protocol.WatchDecide delivers. It answers ctx's
// error when ctx ends first, and ErrClosed after Close.
func (w *Watcher) Next(ctx context.Context) ([]Event, error) {
	for {
		if evs, err := w.take(); err != nil || len(evs) > 0 {
			return evs, err
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take decides the pending keys.
func (w *Watcher) take() ([]Event, error) {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return nil, w.err
	}
	keys := make([]string, 0, len(w.pending))
	for k := range w.pending {
		keys = append(keys, k)
	}
	clear(w.pending)
	w.mu.Unlock()
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	states := make([]protocol.State, len(keys))
	known := make([]bool, len(keys))
	w.h.mu.Lock()
	for i, k := range keys {
		if ks := w.h.keys[k]; ks != nil && ks.gen > 0 {
			states[i], known[i] = ks.state, true
		}
	}
	w.h.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	var evs []Event
	for i, k := range keys {
		if !known[i] {
			continue
		}
		mark := w.marks[k]
		ev, next, ok := protocol.WatchDecide(mark, states[i])
		w.marks[k] = next
		prev, knew := w.known[k]
		switch {
		case ok:
			if !knew {
				prev = protocol.State{}
			}
			w.known[k] = knownState(ev.State)
			evs = append(evs, Event{Key: k, WatchEvent: ev, Prev: prev})
		case !knew && mark.Version > 0 && states[i].Version == mark.Version:
			// The state the watcher started at (a version names one
			// chosen state of a key): the Prev of its next event.
			w.known[k] = knownState(states[i])
		}
	}
	return evs, w.err
}

// Close ends the watch.
func (w *Watcher) Close() {
	w.mu.Lock()
	closed := w.closed
	w.closed = true
	w.mu.Unlock()
	if !closed {
		w.fail(ErrClosed)
		w.h.remove(w)
	}
}
