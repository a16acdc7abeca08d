package kv

import (
	"errors"
	"fmt"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Watching's bounds (COORDINATION.md, Watch), defined once for every API.
const (
	// DefaultWatchWait is how long a long-poll read waits for a change
	// when the request names no wait.
	DefaultWatchWait = 30 * time.Second
	// MaxWatchWait caps a long-poll's wait, as Consul caps its blocking
	// queries; a longer wait is cut to it.
	MaxWatchWait = 10 * time.Minute
	// MaxWatchItems bounds the keys and prefixes of one watch.
	MaxWatchItems = 1000
)

// ErrBadWatchRequest: a watch's parameters are out of bounds.
var ErrBadWatchRequest = errors.New("caspaxos: bad watch request")

// WatchRequest asks for the changes of Keys and of every key under
// Prefixes. From holds, per key, the version the watcher has seen: only
// states above it are delivered (a resumed watch). A prefix watch resumes
// by relisting: it starts with the current state of every live key under
// the prefix.
type WatchRequest struct {
	Keys     []string
	Prefixes []string
	From     map[string]uint64
	// Changes: a prefix starts from the state its listing finds, which is
	// not delivered; its first events are the changes after it (etcd's
	// watch at the current revision).
	Changes bool
	// Known holds, for keys whose From is the version of a state the
	// caller read linearizably, that state: the Prev of the key's first
	// event (server/watch, Watcher.Knew).
	Known map[string]protocol.State
}

// Validate checks the request's bounds.
func (r WatchRequest) Validate(l Limits) error {
	n := len(r.Keys) + len(r.Prefixes)
	if n == 0 || n > MaxWatchItems {
		return fmt.Errorf("%w: %d keys and prefixes; a watch takes 1..%d", ErrBadWatchRequest, n, MaxWatchItems)
	}
	for _, k := range r.Keys {
		if err := l.CheckKey(k); err != nil {
			return err
		}
		if err := CheckClientKey(k); err != nil {
			return err
		}
	}
	for _, p := range r.Prefixes {
		if len(p) > l.MaxKeyBytes {
			return fmt.Errorf("%w: prefix longer than %d bytes", ErrKeyTooLarge, l.MaxKeyBytes)
		}
		if err := CheckClientKey(p); err != nil {
			return err
		}
	}
	return nil
}

// WatchEvent is one delivery of a watch: a key's state, confirmed by a
// linearizable read. Deleted with Version 0: the key's tombstone was
// collected (deleted, no version). PrevVersion is the version the watcher
// saw before (0: none); PrevVersion ≠ Version − 1 (a jump) shows that
// states in between were merged or superseded.
type WatchEvent struct {
	Key         string
	Value       []byte
	Version     uint64
	PrevVersion uint64
	Deleted     bool
	// Created is the version that began the key's current life
	// (protocol.State.Created; 0: unknown, or deleted).
	Created uint64
	// Lease is the lease the key is attached to (0: none, or deleted).
	Lease uint64
	// Prev is the state of the key that the watch knew last before this
	// one (chosen, like every state a watch gives): the state it
	// delivered last, or the one it started from when it knew it. After a
	// jump it is older than the state just before this one, and its
	// Version shows that. The zero State: the watch knew no earlier state
	// (a key created after a prefix watch's listing, or a watch that
	// resumed at a version whose state it never saw); Deleted: the key
	// was deleted or absent when last known.
	Prev protocol.State
}

// WatchWait clamps a long-poll's asked wait: 0 takes DefaultWatchWait,
// more than MaxWatchWait is cut to it.
func WatchWait(asked time.Duration) time.Duration {
	switch {
	case asked <= 0:
		return DefaultWatchWait
	case asked > MaxWatchWait:
		return MaxWatchWait
	}
	return asked
}
