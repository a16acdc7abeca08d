package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/watch"
)

// startWatch makes the acceptor hint its accepts to the hint streams and
// starts the node's watch hub. A Config built without DefaultConfig (a
// zero Watch) takes watch's defaults, field by field.
func (d *Daemon) startWatch() error {
	cfg := d.cfg.Watch
	d.hints = watch.NewPublisher(cfg.MaxPendingHints, d.store)
	d.node.Acceptor().SetHinter(d.hints)
	hub, err := watch.New(cfg, watch.Deps{
		Config: d.members.Config,
		Read:   d.get,
		List:   d.listAll,
		Source: watchSource{d},
		Log:    d.log,
	})
	if err != nil {
		return err
	}
	d.watches = hub
	return nil
}

// listAll lists every live key of prefix, page by page (watch.Deps.List).
func (d *Daemon) listAll(ctx context.Context, prefix string, emit func(string, protocol.State, bool) error) error {
	req := kv.ListRequest{Prefix: prefix, Limit: kv.MaxListLimit}
	for {
		last := ""
		more, err := d.lister.List(ctx, req, func(string) (bool, error) { return true, nil }, func(it kv.ListItem) error {
			last = it.Key
			return emit(it.Key, protocol.State{Value: it.Value, Version: it.Version, Created: it.Created, Attrs: it.Attrs}, it.ValueOmitted)
		})
		if err != nil || !more {
			return err
		}
		req.After = last
	}
}

// watchSource opens hint streams: to this node's acceptor in process, to
// the others' through the peer port's Watch service.
type watchSource struct{ d *Daemon }

func (s watchSource) Open(ctx context.Context, id protocol.NodeID) (watch.Stream, error) {
	if id == s.d.id {
		// A store that may have lost its data (its identity unconfirmed)
		// does not count among the streams, as for a listing.
		if err := s.d.checkServing(); err != nil {
			return nil, err
		}
		return watch.Local{id: s.d.hints}.Open(ctx, id)
	}
	m, ok := s.d.members.Membership().Node(id)
	if !ok {
		return nil, fmt.Errorf("caspaxos/daemon: acceptor %d is not in the membership", id)
	}
	return s.d.admin.OpenHints(ctx, m)
}

// Watch starts a watch (clientapi.Watches). Like List, a node that knows
// it cannot reach a quorum answers kv.ErrNoQuorum at once.
func (d *Daemon) Watch(ctx context.Context, req kv.WatchRequest) (clientapi.Watcher, error) {
	if err := d.Health(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrNoQuorum, err)
	}
	start := d.watches.Watch
	if req.Changes {
		start = d.watches.WatchChanges
	}
	w, err := start(ctx, watch.Interest{Keys: req.Keys, Prefixes: req.Prefixes}, req.From)
	if err != nil {
		return nil, err
	}
	for k, st := range req.Known {
		w.Knew(k, st)
	}
	return watcher{w}, nil
}

type watcher struct{ w *watch.Watcher }

func (w watcher) Next(ctx context.Context) ([]kv.WatchEvent, error) {
	evs, err := w.w.Next(ctx)
	if errors.Is(err, watch.ErrClosed) {
		// The node is stopping: the client resumes elsewhere.
		err = fmt.Errorf("%w: this node is stopping its watches", kv.ErrNoQuorum)
	}
	out := make([]kv.WatchEvent, len(evs))
	for i, ev := range evs {
		out[i] = kv.WatchEvent{Key: ev.Key, Value: ev.State.Value, Version: ev.State.Version,
			PrevVersion: ev.PrevVersion, Deleted: ev.State.Deleted, Created: ev.State.Created, Lease: ev.State.Lease, Prev: ev.Prev}
	}
	return out, err
}

func (w watcher) Close() { w.w.Close() }
