package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Confirming reads and resync. Every state a watcher is delivered comes
// from apply, and apply is called only with what Deps.Read or Deps.List
// returned (but for Bugs.RawAccepts): linearizable reads. The reads of one
// key run one at a time (keyState.queued), so their results arrive in
// order, and apply keeps only a version above the highest confirmed; an
// absent state (a collected tombstone) counts only if nothing changed the
// key since its read began.

// enqueue asks for a read of k (once: a key queued or being read is read
// again after). Called under mu.
func (h *Hub) enqueue(k string) {
	ks := h.keys[k]
	if ks == nil || h.closed {
		return
	}
	if ks.queued {
		ks.again = true
		return
	}
	ks.queued = true
	h.queue = append(h.queue, k)
	kick(h.work)
}

// want is enqueue for callers outside mu.
func (h *Hub) want(k string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.enqueue(k)
}

// reader runs queued reads until the hub closes.
func (h *Hub) reader() {
	defer h.wg.Done()
	for {
		select {
		case <-h.work:
		case <-h.ctx.Done():
			return
		}
		for {
			h.mu.Lock()
			if len(h.queue) == 0 || h.closed {
				h.mu.Unlock()
				break
			}
			k := h.queue[0]
			h.queue = h.queue[1:]
			if len(h.queue) > 0 {
				kick(h.work) // another reader may take the next
			}
			gen := h.keys[k].gen
			h.mu.Unlock()
			h.read(k, gen)
		}
	}
}

// read reads k and applies what it returned.
func (h *Hub) read(k string, gen uint64) {
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.ReadTimeout)
	st, err := h.deps.Read(ctx, k)
	cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	ks := h.keys[k]
	if ks == nil {
		return
	}
	ks.queued = false
	switch {
	case err != nil:
		if h.ctx.Err() == nil {
			h.log.Debug("watch: a confirming read failed; reading again later", slog.String("key", k), slog.Any("error", err))
			h.later(k, h.cfg.ResyncInterval)
		}
	default:
		h.apply(k, ks, st, gen)
		h.settle(k, ks, st)
	}
	if ks.again {
		ks.again = false
		h.enqueue(k)
	}
	h.forget(k, ks)
}

// settle keeps a hint the read did not show, and reads it again later,
// SettleTries times at most (protocol.WatchSettled). Called under mu.
func (h *Hub) settle(k string, ks *keyState, read protocol.State) {
	if !ks.hinted {
		return
	}
	if protocol.WatchSettled(ks.hint, read) || ks.tries >= h.cfg.SettleTries {
		ks.hinted, ks.tries = false, 0
		return
	}
	ks.tries++
	h.later(k, h.cfg.SettleDelay<<(ks.tries-1))
}

// later reads k again after d. Called under mu.
func (h *Hub) later(k string, d time.Duration) {
	time.AfterFunc(d, func() { h.want(k) })
}

// apply takes a confirmed state of k, read when the key's gen was gen, and
// notifies k's watchers if it is news. Called under mu.
func (h *Hub) apply(k string, ks *keyState, st protocol.State, gen uint64) {
	news := st.Version > ks.top || st.Version == 0 && ks.state.Version > 0 && ks.gen == gen
	if !news {
		return
	}
	ks.state, ks.gen, ks.top = st, ks.gen+1, max(ks.top, st.Version)
	h.notify(k, ks)
}

// notify tells every watcher of k that it changed. Called under mu.
func (h *Hub) notify(k string, ks *keyState) {
	for w := range ks.keyRefs {
		w.push(k)
	}
	for p, set := range h.prefixes {
		if kv.PrefixShows(p, k) {
			for w := range set {
				w.push(k)
			}
		}
	}
}

// forget drops the state of a key nobody watches any more. Called under mu.
func (h *Hub) forget(k string, ks *keyState) {
	if len(ks.keyRefs) == 0 && !ks.queued && !h.covered(k) {
		delete(h.keys, k)
	}
}

// relist lists prefix p and applies every key it returns; a key the hub
// knows live under p that the listing lacks is read (it may have been
// deleted and collected). With w, every key listed is pushed to w (a new
// prefix watcher's first events), or, with changes, marked at the version
// listed (WatchChanges: no first events).
func (h *Hub) relist(ctx context.Context, p string, w *Watcher, changes bool) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReadTimeout)
	defer cancel()
	seen := map[string]bool{}
	err := h.deps.List(ctx, p, func(k string, st protocol.State, omitted bool) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.closed || h.prefixes[p] == nil {
			return ErrClosed
		}
		seen[k] = true
		ks := h.key(k)
		if omitted {
			h.enqueue(k)
		} else {
			h.apply(k, ks, st, ks.gen)
		}
		switch {
		case w != nil && changes:
			w.start(k, st, omitted)
		case w != nil:
			w.push(k)
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		return err
	}
	for k, ks := range h.keys {
		if kv.PrefixShows(p, k) && !seen[k] && ks.state.Exists() {
			h.enqueue(k)
		}
	}
	return nil
}

// followConfig checks the node's configuration (in memory) on the resync
// timer and moves the streams to a new accept set.
func (h *Hub) followConfig() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
		h.mu.Lock()
		if len(h.keys) > 0 || len(h.prefixes) > 0 {
			h.ensureStreams()
		}
		h.mu.Unlock()
	}
}

// resyncLoop re-reads every watched key and re-lists every watched prefix
// on the resync timer until one whole pass began with the streams whole
// and they stayed whole through it.
func (h *Hub) resyncLoop() {
	defer h.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
		h.mu.Lock()
		whole, breaks := h.whole, h.breaks
		var prefixes []string
		for k, ks := range h.keys {
			if len(ks.keyRefs) > 0 || h.covered(k) {
				h.enqueue(k)
			}
		}
		for p := range h.prefixes {
			prefixes = append(prefixes, p)
		}
		h.mu.Unlock()
		failed := false
		for _, p := range prefixes {
			if err := h.relist(h.ctx, p, nil, false); err != nil && err != ErrClosed {
				h.log.Debug("watch: a resync listing failed", slog.String("prefix", p), slog.Any("error", err))
				failed = true
			}
		}
		h.mu.Lock()
		if whole && !failed && h.whole && h.breaks == breaks || h.closed {
			h.resync = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		t.Reset(h.cfg.ResyncInterval)
	}
}

// Publish takes a state of key known to be chosen: what a write of this
// node returned once an accept quorum had answered it (its proposer, or
// the key's home through a forward), or what a linearizable read
// returned. The key's watchers get it without a confirming read; a hint
// it shows is settled. A state without a version (an absent key) is not
// taken: only a read in the key's own order may show a deletion's
// collection.
func (h *Hub) Publish(key string, st protocol.State) {
	if st.Version == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	ks := h.keys[key]
	if ks == nil {
		if !h.covered(key) {
			return // nobody watches it
		}
		ks = h.key(key)
	}
	h.apply(key, ks, st, ks.gen)
	if ks.hinted && protocol.WatchSettled(ks.hint, st) {
		ks.hinted, ks.tries = false, 0
	}
}
