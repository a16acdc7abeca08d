// Package clientapitest provides a clientapi.Backend for tests of the client
// services, the Go client and the CLI: it runs operations on a map with the
// store's real change functions, so their semantics are those of the store.
package clientapitest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
)

// Backend is a map-backed clientapi.Backend. Its zero value is not ready:
// use New.
type Backend struct {
	mu   sync.Mutex
	m    map[string]protocol.State
	fail error
	// hold, when set, makes every write signal on seen and wait until hold
	// is closed or its context is done.
	hold chan struct{}
	seen chan struct{}
	// members, when set, is what Members reports.
	members *clientapi.Membership
	// changed is closed, and replaced, at every write (Watch).
	changed chan struct{}
}

// New returns an empty backend.
func New() *Backend {
	return &Backend{m: make(map[string]protocol.State), changed: make(chan struct{})}
}

// SetFail makes every operation return err (nil: work again) and Health
// report the node unhealthy.
func (b *Backend) SetFail(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

// HoldWrites makes every later write announce itself on the returned
// channel and then wait until release is called (or its context ends, which
// it answers with kv.ErrUnknownOutcome).
func (b *Backend) HoldWrites() (seen <-chan struct{}, release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold, b.seen = make(chan struct{}), make(chan struct{}, 16)
	return b.seen, sync.OnceFunc(func() { close(b.hold) })
}

// Do applies op to the map; versions rise by one per change (to a
// write's MinVersion if that is higher).
func (b *Backend) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	if err := b.wait(ctx, op); err != nil {
		return protocol.State{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return protocol.State{}, b.fail
	}
	cur := b.m[op.Key]
	ch, err := op.ChangeAt(time.Now().UnixMilli(), kv.DefaultIdempotency())
	if err != nil || ch == nil {
		return cur, err
	}
	w, err := ch(cur)
	if first, ok := kv.Outcome(err); ok {
		return first, nil
	}
	if err != nil {
		return cur, err
	}
	if cur, err = protocol.Apply(cur, w, 0); err != nil {
		return cur, err
	}
	b.m[op.Key] = cur
	close(b.changed)
	b.changed = make(chan struct{})
	return cur, nil
}

// Watch watches keys (clientapi.Watches); prefixes are not supported.
// Each Next answers the keys whose state is above what the watch
// delivered (req.From at first), or waits for the next write.
func (b *Backend) Watch(_ context.Context, req kv.WatchRequest) (clientapi.Watcher, error) {
	if len(req.Prefixes) > 0 {
		return nil, errors.New("clientapitest: no prefix watches")
	}
	from := make(map[string]uint64, len(req.Keys))
	for _, k := range req.Keys {
		from[k] = req.From[k]
	}
	return &watcher{b: b, from: from}, nil
}

type watcher struct {
	b    *Backend
	from map[string]uint64
}

func (w *watcher) Next(ctx context.Context) ([]kv.WatchEvent, error) {
	for {
		w.b.mu.Lock()
		var evs []kv.WatchEvent
		for k, v := range w.from {
			if s := w.b.m[k]; s.Version > v {
				evs = append(evs, kv.WatchEvent{Key: k, Value: s.Value, Version: s.Version, PrevVersion: v, Deleted: !s.Exists()})
				w.from[k] = s.Version
			}
		}
		changed := w.b.changed
		w.b.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (w *watcher) Close() {}

func (b *Backend) wait(ctx context.Context, op kv.Op) error {
	b.mu.Lock()
	hold, seen := b.hold, b.seen
	b.mu.Unlock()
	if hold == nil || op.Kind == kv.OpGet {
		return nil
	}
	seen <- struct{}{}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return kv.ErrUnknownOutcome
	}
}

// Health reports unhealthy while SetFail is in force.
func (b *Backend) Health(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return errors.New("reaches 1 of 3 acceptors")
	}
	return nil
}

// List lists the map's live keys of req in key order (a snapshot, which
// the real store's listing is not; tests of the API need no more); as the
// real one, reserved keys only under a reserved prefix.
func (b *Backend) List(_ context.Context, req kv.ListRequest, allow func(string) (bool, error), emit func(kv.ListItem) error) (bool, error) {
	b.mu.Lock()
	if b.fail != nil {
		b.mu.Unlock()
		return false, b.fail
	}
	var items []kv.ListItem
	for k, s := range b.m {
		if s.Exists() && strings.HasPrefix(k, req.Prefix) && k > req.After &&
			(kv.CheckClientKey(k) == nil || kv.CheckClientKey(req.Prefix) != nil) {
			it := kv.ListItem{Key: k, Version: s.Version, Created: s.Created, Attrs: s.Attrs}
			if !req.KeysOnly {
				it.Value = s.Value
			}
			items = append(items, it)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(items, func(x, y kv.ListItem) int { return strings.Compare(x.Key, y.Key) })
	n := 0
	for i, it := range items {
		ok, err := allow(it.Key)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		if err := emit(it); err != nil {
			return false, err
		}
		if n++; n == req.Limit {
			return i < len(items)-1, nil
		}
	}
	return false, nil
}

// Members reports two members, n1 (itself) reachable and n2 not, unless
// SetMembers set others.
func (b *Backend) Members(context.Context) (clientapi.Membership, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.members != nil {
		return *b.members, nil
	}
	return clientapi.Membership{ConfigVersion: 1, SelfID: 1, Members: []clientapi.Member{
		{Name: "n1", ID: 1, PeerAddr: "127.0.0.1:7080", ClientAddr: "127.0.0.1:7070", Reachable: true},
		{Name: "n2", ID: 2, PeerAddr: "127.0.0.1:7081"},
	}}, nil
}

// SetMembers makes Members report this backend as member self of the
// members ids, at configuration version.
func (b *Backend) SetMembers(self, version uint64, ids ...uint64) {
	m := &clientapi.Membership{ConfigVersion: version, SelfID: self}
	for _, id := range ids {
		m.Members = append(m.Members, clientapi.Member{Name: fmt.Sprintf("n%d", id), ID: id, Reachable: true})
	}
	b.mu.Lock()
	b.members = m
	b.mu.Unlock()
}

// ServeGRPC serves b's gRPC client API on a free loopback port until the
// test ends, and returns its address and the server (to stop it early).
func ServeGRPC(t testing.TB, b clientapi.Backend) (string, *grpc.Server) {
	addr, s, _ := ServeGRPCAPI(t, b)
	return addr, s
}

// ServeGRPCAPI is ServeGRPC that also returns the API (to drain it).
func ServeGRPCAPI(t testing.TB, b clientapi.Backend) (string, *grpc.Server, *clientapi.GRPC) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(clientapi.KeepaliveOptions()...)
	cfg := clientapi.GRPCConfig{Limits: kv.DefaultLimits}
	if w, ok := b.(clientapi.Watches); ok { // (*Backend).Watch: locks wait on it
		cfg.Watches = w
	}
	api := clientapi.RegisterGRPC(s, cfg, b)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), s, api
}
