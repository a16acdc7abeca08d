package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// WatchEvent is one change of a watched key: a state confirmed by a
// linearizable read on the node. Deleted with Version 0: the key's
// tombstone was collected (deleted, no version). PrevVersion is the
// version this watch saw of the key before (0: none); PrevVersion ≠
// Version − 1 (see Jump) shows that states in between were merged by
// composition or passed over.
type WatchEvent struct {
	Key         string
	Value       []byte
	Version     uint64
	PrevVersion uint64
	Deleted     bool
}

// Jump reports whether states between PrevVersion and Version were not
// shown (merged, or superseded before they were read).
func (e WatchEvent) Jump() bool { return e.Version != 0 && e.Version != e.PrevVersion+1 }

// WatchOptions shape a watch. Prefixes: watch every key under each too
// (their first events are the current state of every live key under
// them). From: per key, the version already seen (a resumed watch); only
// states above it are delivered.
type WatchOptions struct {
	Prefixes []string
	From     map[string]uint64
}

// watchRetryMax bounds the wait between two attempts of a watch whose
// every endpoint failed.
const watchRetryMax = 2 * time.Second

// Watch returns the changes of keys (and of the keys under
// opts.Prefixes) as they come, until ctx ends or the loop stops.
//
// The guarantees (docs/api.md, Watch): a value that was not chosen is
// never delivered; a key's versions only rise; the latest state of every
// watched key is delivered, also across node failures: when its node
// fails the watch moves to another endpoint and resumes, each key from the
// version it last delivered, each prefix by relisting, and it drops
// anything at or below a version it delivered already. Events are
// coalesced per key: a slow reader gets a key's latest state, not every
// state.
//
// The loop ends with an error only for a refusal that retrying cannot
// cure (ErrPermissionDenied, ErrUnauthenticated, ErrBadRequest,
// ErrTooLarge); an unreachable cluster is retried until ctx ends, which
// ends the loop without an error.
func (c *Client) Watch(ctx context.Context, keys []string, opts WatchOptions) iter.Seq2[WatchEvent, error] {
	return func(yield func(WatchEvent, error) bool) {
		type mark struct {
			version uint64
			deleted bool
		}
		marks := map[string]mark{}
		for k, v := range opts.From {
			marks[k] = mark{version: v}
		}
		stopped := false
		take := func(ev WatchEvent) bool {
			m := marks[ev.Key]
			switch {
			case ev.Version > m.version:
			case ev.Version == 0 && ev.Deleted && m.version > 0 && !m.deleted:
			default:
				return true // at or below what this watch delivered: a new node's relist
			}
			ev.PrevVersion = m.version
			marks[ev.Key] = mark{version: max(m.version, ev.Version), deleted: ev.Deleted}
			if !yield(ev, nil) {
				stopped = true
				return false
			}
			return true
		}
		delay := 50 * time.Millisecond
		for ctx.Err() == nil && !stopped {
			err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
				req := &caspaxospb.WatchRequest{}
				for _, k := range keys {
					req.Keys = append(req.Keys, []byte(k))
					req.FromVersions = append(req.FromVersions, marks[k].version)
				}
				for _, p := range opts.Prefixes {
					req.Prefixes = append(req.Prefixes, []byte(p))
				}
				s, err := caspaxospb.NewKVClient(conn).Watch(ctx, req)
				if err != nil {
					return err
				}
				for {
					r, err := s.Recv()
					if err != nil {
						if errors.Is(err, io.EOF) {
							err = errors.New("caspaxos/client: the node ended the watch")
						}
						return err
					}
					delay = 50 * time.Millisecond
					for _, e := range r.GetEvents() {
						ev := WatchEvent{Key: string(e.GetKey()), Value: e.GetValue(), Version: e.GetVersion(), Deleted: e.GetDeleted()}
						if !take(ev) {
							return nil
						}
					}
				}
			})
			if stopped || ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrBadRequest) || errors.Is(err, ErrTooLarge) {
				yield(WatchEvent{}, err)
				return
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			delay = min(2*delay, watchRetryMax)
		}
	}
}
