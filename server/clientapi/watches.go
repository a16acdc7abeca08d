package clientapi

import (
	"context"

	"github.com/caspaxos/caspaxos/kv"
)

// Watches starts watches (server/watch, through the daemon).
type Watches interface {
	// Watch starts a watch of req (checked by Validate). Errors are those
	// of package kv.
	Watch(ctx context.Context, req kv.WatchRequest) (Watcher, error)
}

// Watcher is one running watch.
type Watcher interface {
	// Next waits for the next events: each a state confirmed by a
	// linearizable read, coalesced per key (the latest state of a key,
	// not every state). It answers ctx's error when ctx ends first.
	Next(ctx context.Context) ([]kv.WatchEvent, error)
	Close()
}

// WaitChange returns nil once one of from's keys has a state above its
// version there, or ctx's error once ctx ends: the wait of a lock's
// acquirer or observer (lock.Deps.Wait), on a watch, never polling.
func WaitChange(ctx context.Context, w Watches, from map[string]uint64) error {
	req := kv.WatchRequest{From: from}
	for k := range from {
		req.Keys = append(req.Keys, k)
	}
	wa, err := w.Watch(ctx, req)
	if err != nil {
		return err
	}
	defer wa.Close()
	for {
		evs, err := wa.Next(ctx)
		if err != nil || len(evs) > 0 {
			return err
		}
	}
}
