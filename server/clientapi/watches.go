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
