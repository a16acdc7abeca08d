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
}

// Watcher is one watch: keys and prefixes, with a mark per key
// (protocol.WatchMark). It holds no queue of states: a change marks its key
// pending, and Next reads the key's latest confirmed state from the hub,
// so a slow watcher gets the latest state of each key, not every state.
type Watcher struct {
	h  *Hub
	in Interest

	mu      sync.Mutex
	marks   map[string]protocol.WatchMark
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

// start sets k's mark to version, the state a WatchChanges listing found,
// unless it is past it already. Called under Hub.mu.
func (w *Watcher) start(k string, version uint64) {
	w.mu.Lock()
	if m := w.marks[k]; version > m.Version {
		w.marks[k] = protocol.WatchMark{Version: version}
	}
	w.mu.Unlock()
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
		ev, next, ok := protocol.WatchDecide(w.marks[k], states[i])
		w.marks[k] = next
		if ok {
			evs = append(evs, Event{Key: k, WatchEvent: ev})
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
