package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/watch"
)

// Watching (doc.go, Watching): every incarnation runs the product's
// watch.Publisher on its acceptor and a watch.Hub with two watchers, one
// of k1 and one of every hot key (prefix "k"; the Membership plans' cold
// keys, "c…", must be left alone, or the watchers' reads would repair
// them and hide grow-without-catch-up), over hint streams that follow the
// faulty network's links and nodes.

// watchConfig is every hub's configuration: short timers, so that a run
// of seconds resyncs and settles many times.
func (c *cluster) watchConfig() watch.Config {
	cfg := watch.DefaultConfig()
	cfg.ResyncInterval = 50 * time.Millisecond
	cfg.SettleDelay = 5 * time.Millisecond
	cfg.OpenTimeout = 100 * time.Millisecond
	cfg.ReadTimeout = opTimeout
	cfg.Bugs.RawAccepts = c.variant.WatchRawAccepts
	return cfg
}

// startWatch hooks inc's acceptor to a Publisher and starts inc's hub and
// its two watchers.
func (c *cluster) startWatch(inc *incarnation) error {
	inc.hints = watch.NewPublisher(0, inc.store)
	inc.node.Acceptor().SetHinter(inc.hints)
	hub, err := watch.New(c.watchConfig(), watch.Deps{
		Config: inc.keeper.Config,
		Read: func(ctx context.Context, key string) (protocol.State, error) {
			return inc.node.Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
		},
		List: func(ctx context.Context, prefix string, emit func(string, protocol.State, bool) error) error {
			req := kv.ListRequest{Prefix: prefix, Limit: kv.MaxListLimit}
			for {
				last := ""
				more, err := inc.lister.List(ctx, req, func(string) (bool, error) { return true, nil }, func(it kv.ListItem) error {
					last = it.Key
					return emit(it.Key, protocol.State{Value: it.Value, Version: it.Version}, it.ValueOmitted)
				})
				if err != nil || !more {
					return err
				}
				req.After = last
			}
		},
		Source: hintSource{inc},
		Log:    c.log,
	})
	if err != nil {
		return err
	}
	inc.hub, inc.hubStart = hub, c.h.now()
	for _, in := range []watch.Interest{{Keys: []string{"k1"}}, {Prefixes: []string{"k"}}} {
		c.watchers.mu.Lock()
		c.watchers.next++
		r := &watchRec{id: c.watchers.next, inc: inc, in: in, last: map[string]protocol.State{}}
		c.watchers.all = append(c.watchers.all, r)
		c.watchers.mu.Unlock()
		inc.watchWG.Add(1)
		go func() {
			defer inc.watchWG.Done()
			c.runWatcher(r)
		}()
	}
	return nil
}

// stopWatch ends inc's hub and waits for its watchers.
func (inc *incarnation) stopWatch() {
	if inc.hub != nil {
		inc.hub.Close()
		inc.watchWG.Wait()
	}
}

// watchers are every watcher of the run.
type watchers struct {
	mu   sync.Mutex
	next int
	all  []*watchRec
}

// watchRec is one watcher and what it was delivered last of each key.
type watchRec struct {
	id  int
	inc *incarnation
	in  watch.Interest
	mu  sync.Mutex
	// last: the state of each key it was delivered last (absent: a
	// collected tombstone); closed: its hub is gone.
	last   map[string]protocol.State
	events int
}

// watchClient is the Porcupine client of a watcher's deliveries.
func watchClient(id int) int { return 2000 + id }

// runWatcher starts r's watch (retrying until its hub closes) and records
// each delivery: as a read of its key over [hub start, delivery], whose
// state Porcupine must find the key had at some instant of it (a state
// the watch's reads returned, confirmed after the hub started), and
// checks that the key's versions only rise.
func (c *cluster) runWatcher(r *watchRec) {
	ctx := context.Background()
	var w *watch.Watcher
	for {
		var err error
		if w, err = r.inc.hub.Watch(ctx, r.in, nil); err == nil {
			break
		}
		if errors.Is(err, watch.ErrClosed) {
			return
		}
		t := time.NewTimer(20 * time.Millisecond) // a listing failed under faults: try again
		<-t.C
	}
	defer w.Close()
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return // the hub closed
		}
		now := c.h.now()
		for _, ev := range evs {
			c.recordWatch(r, ev, now)
		}
	}
}

func (c *cluster) recordWatch(r *watchRec, ev watch.Event, now int64) {
	st := ev.State
	if st.Version == 0 {
		st = protocol.State{} // a collected tombstone reads as absent
	}
	r.mu.Lock()
	prev, seen := r.last[ev.Key]
	r.last[ev.Key] = st
	r.events++
	r.mu.Unlock()
	if seen && st.Version != 0 && st.Version <= prev.Version {
		c.fail(fmt.Sprintf("watcher %d on node %d: %q went from version %d to %d", r.id, r.inc.id, ev.Key, prev.Version, st.Version))
	}
	if seen && ev.PrevVersion != prev.Version && prev.Version != 0 {
		c.fail(fmt.Sprintf("watcher %d on node %d: %q's event says previous %d, it was delivered %d", r.id, r.inc.id, ev.Key, ev.PrevVersion, prev.Version))
	}
	// Prev (etcd's prev_kv) is the state delivered before, a chosen one;
	// a watch from the start that delivered nothing of the key knows none.
	if p := known(ev.Prev); seen && !p.Equal(known(prev)) || !seen && p.Version != 0 {
		c.fail(fmt.Sprintf("watcher %d on node %d: %q's event at %s says its previous state was %s; it was delivered %s (seen %v)", r.id, r.inc.id, ev.Key, st, ev.Prev, prev, seen))
	}
	c.h.add(sim.HistoryOp{Client: watchClient(r.id), Op: kv.Op{Kind: kv.OpGet, Key: ev.Key},
		Call: r.inc.hubStart, Return: now, State: st})
	c.h.mu.Lock()
	c.h.watchEvents++
	c.h.mu.Unlock()
}

// known is st as a watcher's Prev shows it: without the request table,
// and a collected tombstone as absent.
func known(st protocol.State) protocol.State {
	if st.Version == 0 {
		return protocol.State{}
	}
	return protocol.State{Value: st.Value, Version: st.Version, Deleted: st.Deleted, Created: st.Created, Attrs: st.Attrs}
}

// watchFinalLimit bounds the wait, once every fault healed and every node
// is up, for each running watcher to be delivered the last state of every
// key.
const watchFinalLimit = 10 * time.Second

// checkWatchFinal checks the third guarantee on the watchers of the
// running incarnations: each ends with the last state of every key it
// watches, read linearizably here (a live key's value and version; a
// deleted or collected one as deleted, or never delivered).
func (c *cluster) checkWatchFinal() (checked int) {
	keys := map[string]bool{}
	c.h.mu.Lock()
	for _, op := range c.h.ops {
		keys[op.Op.Key] = true
	}
	c.h.mu.Unlock()
	c.mu.Lock()
	var reader *incarnation
	for _, inc := range c.up {
		if reader == nil || inc.id < reader.id {
			reader = inc
		}
	}
	c.mu.Unlock()
	if reader == nil {
		return 0
	}
	final := map[string]protocol.State{}
	deadline := time.Now().Add(watchFinalLimit)
	for k := range keys {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			st, err := reader.node.Do(ctx, kv.Op{Kind: kv.OpGet, Key: k})
			cancel()
			if err == nil {
				final[k] = st
				break
			}
			if time.Now().After(deadline) {
				c.fail(fmt.Sprintf("watch: no final read of %q: %v", k, err))
				return 0
			}
		}
	}
	c.watchers.mu.Lock()
	all := append([]*watchRec(nil), c.watchers.all...)
	c.watchers.mu.Unlock()
	for _, r := range all {
		if !c.running(r.inc) {
			continue
		}
		checked++
		for {
			missing := r.missing(final)
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				c.fail(fmt.Sprintf("watcher %d on node %d never got the last state: %s", r.id, r.inc.id, missing))
				break
			}
			t := time.NewTimer(5 * time.Millisecond) // polling the watcher's record, not waiting for an outcome
			<-t.C
		}
	}
	return checked
}

// running reports whether inc is its node's current incarnation.
func (c *cluster) running(inc *incarnation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up[inc.id] == inc
}

// missing describes a key whose last state r was not delivered ("": none).
func (r *watchRec) missing(final map[string]protocol.State) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, st := range final {
		if !r.watches(k) {
			continue
		}
		got, seen := r.last[k]
		switch {
		case st.Exists() && (got.Version != st.Version || got.Deleted || !bytes.Equal(got.Value, st.Value)):
			// What a watcher is told: the value and version (a change of
			// the request table alone, an outcome query's, keeps both).
			return fmt.Sprintf("%q: delivered %s, last %s", k, got, st)
		case !st.Exists() && seen && got.Exists():
			return fmt.Sprintf("%q: delivered %s, last %s (deleted)", k, got, st)
		}
	}
	return ""
}

// watches reports whether r watches key.
func (r *watchRec) watches(key string) bool {
	return slices.Contains(r.in.Keys, key) || slices.ContainsFunc(r.in.Prefixes, func(p string) bool { return strings.HasPrefix(key, p) })
}

// hintSource opens a node's hint streams over the faulty network: a
// stream to an acceptor opens only over a link that is up to a node that
// is, and breaks when either goes.
type hintSource struct{ inc *incarnation }

func (s hintSource) Open(ctx context.Context, id protocol.NodeID) (watch.Stream, error) {
	n := s.inc.net
	dst, err := n.call(s.inc, id)
	if err != nil {
		return nil, err
	}
	if dst.hints == nil {
		return nil, fmt.Errorf("node %d serves no hints yet", id)
	}
	ctx, cancel := context.WithCancel(ctx)
	st, err := watch.Local{id: dst.hints}.Open(ctx, id)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() { // the stream's connection: it breaks with its link or node
		defer cancel()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if d, err := n.call(s.inc, id); err != nil || d != dst {
				return
			}
		}
	}()
	return st, nil
}
