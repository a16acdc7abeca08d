package etcdapi_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/etcdapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
)

// fakeWatches records each watch asked and hands the test a channel to
// feed its events.
type fakeWatches struct {
	mu   sync.Mutex
	reqs []kv.WatchRequest
	ws   []*fakeWatcher
}

type fakeWatcher struct {
	ch     chan []kv.WatchEvent
	closed chan struct{}
	once   sync.Once
}

func (f *fakeWatches) Watch(_ context.Context, req kv.WatchRequest) (clientapi.Watcher, error) {
	w := &fakeWatcher{ch: make(chan []kv.WatchEvent, 16), closed: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	f.ws = append(f.ws, w)
	return w, nil
}

func (f *fakeWatches) last() (kv.WatchRequest, *fakeWatcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1], f.ws[len(f.ws)-1]
}

func (w *fakeWatcher) Next(ctx context.Context) ([]kv.WatchEvent, error) {
	select {
	case evs := <-w.ch:
		return evs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.closed:
		return nil, errors.New("closed")
	}
}

func (w *fakeWatcher) Close() { w.once.Do(func() { close(w.closed) }) }

func serveWatches(t *testing.T, b *clientapitest.Backend, f *fakeWatches, progress time.Duration) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(etcdapi.ServerOptions()...)
	etcdapi.New(etcdapi.Config{MemberID: 1, Watches: f, WatchProgressInterval: progress}, b).Register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func create(t *testing.T, st etcdpb.Watch_WatchClient, r *etcdpb.WatchCreateRequest) *etcdpb.WatchResponse {
	t.Helper()
	if err := st.Send(&etcdpb.WatchRequest{RequestUnion: &etcdpb.WatchRequest_CreateRequest{CreateRequest: r}}); err != nil {
		t.Fatal(err)
	}
	return recv(t, st)
}

func recv(t *testing.T, st etcdpb.Watch_WatchClient) *etcdpb.WatchResponse {
	t.Helper()
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWatch: etcd's Watch on caspaxos's watches: a key watch from now
// (from the key's version) and at a start revision, a prefix watch of
// changes, on one stream; events mapped as KV maps keys, a filter, the
// revision in each header, cancel, a progress request; a prefix resumed
// at a revision answered with a compaction; ranges that are not a prefix
// refused, the stream going on.
func TestWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := clientapitest.New()
	f := &fakeWatches{}
	conn := serveWatches(t, b, f, time.Hour)
	put(t, etcdpb.NewKVClient(conn), "k", "v1")
	st, err := etcdpb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	r := create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("k")})
	if !r.GetCreated() || r.GetCanceled() || r.GetWatchId() != 0 || r.GetHeader().GetRevision() != 1 {
		t.Fatalf("created key watch: %v", r)
	}
	req, kw := f.last()
	if known := req.Known["k"]; string(known.Value) != "v1" || known.Version != 1 || len(req.Known) != 1 {
		t.Fatalf("key watch knew %+v, want the state read", req.Known)
	}
	req.Known = nil
	if !reflect.DeepEqual(req, kv.WatchRequest{Keys: []string{"k"}, From: map[string]uint64{"k": 1}, Changes: true}) {
		t.Fatalf("key watch asked %+v", req)
	}
	r = create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0"), Filters: []etcdpb.WatchCreateRequest_FilterType{etcdpb.WatchCreateRequest_NODELETE}})
	if !r.GetCreated() || r.GetWatchId() != 1 || r.GetHeader().GetRevision() != 1 {
		t.Fatalf("created prefix watch: %v", r)
	}
	req, pw := f.last()
	if !reflect.DeepEqual(req, kv.WatchRequest{Prefixes: []string{"p/"}, Changes: true}) {
		t.Fatalf("prefix watch asked %+v", req)
	}

	kw.ch <- []kv.WatchEvent{{Key: "k", Value: []byte("v2"), Version: 2, PrevVersion: 1, Created: 1}}
	r = recv(t, st)
	want := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v2"), ModRevision: 2, CreateRevision: 1, Version: 2}}
	if r.GetWatchId() != 0 || len(r.GetEvents()) != 1 || !reflect.DeepEqual(r.GetEvents()[0].GetKv().String(), want.GetKv().String()) || r.GetEvents()[0].GetType() != want.GetType() || r.GetHeader().GetRevision() != 2 {
		t.Fatalf("key event: %v", r)
	}
	kw.ch <- []kv.WatchEvent{{Key: "k", Version: 4, PrevVersion: 2, Deleted: true}}
	if r = recv(t, st); len(r.GetEvents()) != 1 || r.GetEvents()[0].GetType() != mvccpb.Event_DELETE || r.GetEvents()[0].GetKv().GetModRevision() != 4 {
		t.Fatalf("key deletion: %v", r)
	}
	pw.ch <- []kv.WatchEvent{{Key: "p/a", Value: []byte("a"), Version: 3, Created: 3}, {Key: "p/b", Version: 5, Deleted: true}}
	r = recv(t, st)
	if r.GetWatchId() != 1 || len(r.GetEvents()) != 1 || string(r.GetEvents()[0].GetKv().GetKey()) != "p/a" || r.GetEvents()[0].GetKv().GetVersion() != 1 || r.GetHeader().GetRevision() != 0 {
		t.Fatalf("prefix events under NODELETE: %v", r)
	}

	// A progress request: each watch's progress, by its ID.
	if err := st.Send(&etcdpb.WatchRequest{RequestUnion: &etcdpb.WatchRequest_ProgressRequest{ProgressRequest: &etcdpb.WatchProgressRequest{}}}); err != nil {
		t.Fatal(err)
	}
	got := map[int64]int64{}
	for range 2 {
		r := recv(t, st)
		if len(r.GetEvents()) != 0 || r.GetCreated() || r.GetCanceled() {
			t.Fatalf("progress: %v", r)
		}
		got[r.GetWatchId()] = r.GetHeader().GetRevision()
	}
	if !reflect.DeepEqual(got, map[int64]int64{0: 4, 1: 1}) {
		t.Fatalf("progress revisions by watch: %v", got)
	}

	if err := st.Send(&etcdpb.WatchRequest{RequestUnion: &etcdpb.WatchRequest_CancelRequest{CancelRequest: &etcdpb.WatchCancelRequest{WatchId: 0}}}); err != nil {
		t.Fatal(err)
	}
	if r = recv(t, st); !r.GetCanceled() || r.GetWatchId() != 0 || r.GetCompactRevision() != 0 {
		t.Fatalf("cancel: %v", r)
	}
	select {
	case <-kw.closed:
	default:
		t.Fatal("a cancelled watch's watcher is not closed")
	}

	// A key never written: created at revision 1, not 0, at which clientv3
	// would resume from now and miss the key's creation.
	if r = create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("absent")}); !r.GetCreated() || r.GetCanceled() || r.GetHeader().GetRevision() != 1 {
		t.Fatalf("created watch of an absent key: %v", r)
	}
	if req, _ := f.last(); !reflect.DeepEqual(req.From, map[string]uint64{"absent": 0}) {
		t.Fatalf("watch of an absent key asked %+v", req)
	}
	// A key at a start revision: from the revision before it.
	if r = create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("k"), StartRevision: 3}); !r.GetCreated() || r.GetCanceled() {
		t.Fatalf("key at revision 3: %v", r)
	}
	if req, _ := f.last(); !reflect.DeepEqual(req.From, map[string]uint64{"k": 2}) {
		t.Fatalf("key at revision 3 asked %+v", req)
	}
	// A prefix at a revision: created, then a compaction.
	n := len(f.reqs)
	r = create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0"), StartRevision: 7})
	id := r.GetWatchId()
	if !r.GetCreated() || r.GetCanceled() {
		t.Fatalf("prefix at a revision: %v", r)
	}
	if r = recv(t, st); r.GetWatchId() != id || !r.GetCanceled() || r.GetCompactRevision() == 0 || !strings.Contains(r.GetCancelReason(), "list the prefix again") {
		t.Fatalf("prefix at a revision, then: %v", r)
	}
	if len(f.reqs) != n {
		t.Fatal("a prefix resumed at a revision started a watch")
	}
	for _, tc := range []struct {
		name string
		r    *etcdpb.WatchCreateRequest
		says string
	}{
		{"a range", &etcdpb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c")}, "one key or a prefix"},
		{"from a key", &etcdpb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}}, "one key or a prefix"},
		{"reserved", &etcdpb.WatchCreateRequest{Key: []byte("\x00lease/1")}, "reserved"},
		{"no key", &etcdpb.WatchCreateRequest{}, "key"},
	} {
		if r := create(t, st, tc.r); !r.GetCreated() || !r.GetCanceled() || !strings.Contains(r.GetCancelReason(), tc.says) {
			t.Fatalf("%s: %v, want a refusal saying %q", tc.name, r, tc.says)
		}
	}
	// The stream goes on: the prefix watch still delivers.
	pw.ch <- []kv.WatchEvent{{Key: "p/c", Value: []byte("c"), Version: 1, Created: 1}}
	if r = recv(t, st); r.GetWatchId() != 1 || len(r.GetEvents()) != 1 {
		t.Fatalf("after the refusals: %v", r)
	}
}

// TestWatchPrevKV: with prev_kv an event carries its kv.WatchEvent.Prev
// when it was live: a put's and a delete's state before; after a jump the
// older state, its mod_revision showing it; none after a deletion nor
// when the watch knew none; and no prev_kv to a watch that did not ask.
func TestWatchPrevKV(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &fakeWatches{}
	conn := serveWatches(t, clientapitest.New(), f, time.Hour)
	st, err := etcdpb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0"), PrevKv: true}); !r.GetCreated() || r.GetCanceled() {
		t.Fatalf("create with prev_kv: %v", r)
	}
	_, w := f.last()
	if r := create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0")}); !r.GetCreated() || r.GetCanceled() {
		t.Fatalf("create: %v", r)
	}
	_, plain := f.last()
	v := func(s string, version, created uint64) protocol.State {
		return protocol.State{Value: []byte(s), Version: version, Created: created}
	}
	for _, tc := range []struct {
		name string
		ev   kv.WatchEvent
		prev *mvccpb.KeyValue // nil: no prev_kv
	}{
		{"created", kv.WatchEvent{Key: "p/a", Value: []byte("a1"), Version: 1, Created: 1}, nil},
		{"put", kv.WatchEvent{Key: "p/a", Value: []byte("a2"), Version: 2, PrevVersion: 1, Created: 1, Prev: v("a1", 1, 1)},
			&mvccpb.KeyValue{Key: []byte("p/a"), Value: []byte("a1"), ModRevision: 1, CreateRevision: 1, Version: 1}},
		{"jump", kv.WatchEvent{Key: "p/a", Value: []byte("a5"), Version: 5, PrevVersion: 2, Created: 1, Prev: v("a2", 2, 1)},
			&mvccpb.KeyValue{Key: []byte("p/a"), Value: []byte("a2"), ModRevision: 2, CreateRevision: 1, Version: 2}},
		{"delete", kv.WatchEvent{Key: "p/a", Version: 6, PrevVersion: 5, Deleted: true, Prev: v("a5", 5, 1)},
			&mvccpb.KeyValue{Key: []byte("p/a"), Value: []byte("a5"), ModRevision: 5, CreateRevision: 1, Version: 5}},
		{"put after delete", kv.WatchEvent{Key: "p/a", Value: []byte("a7"), Version: 7, PrevVersion: 6, Created: 7, Prev: protocol.State{Version: 6, Deleted: true}}, nil},
		{"unknown before", kv.WatchEvent{Key: "p/b", Value: []byte("b9"), Version: 9, PrevVersion: 3}, nil},
	} {
		w.ch <- []kv.WatchEvent{tc.ev}
		r := recv(t, st)
		if len(r.GetEvents()) != 1 {
			t.Fatalf("%s: %v", tc.name, r)
		}
		if got := r.GetEvents()[0].GetPrevKv(); got.String() != tc.prev.String() || (got == nil) != (tc.prev == nil) {
			t.Fatalf("%s: prev_kv %v, want %v", tc.name, got, tc.prev)
		}
		plain.ch <- []kv.WatchEvent{tc.ev}
		if r := recv(t, st); len(r.GetEvents()) != 1 || r.GetEvents()[0].GetPrevKv() != nil {
			t.Fatalf("%s without prev_kv: %v", tc.name, r)
		}
	}
}

// TestWatchProgressNotify: a watch that asked for progress notifications
// and gets no event is told its progress, and not while events flow.
func TestWatchProgressNotify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &fakeWatches{}
	conn := serveWatches(t, clientapitest.New(), f, 20*time.Millisecond)
	st, err := etcdpb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := create(t, st, &etcdpb.WatchCreateRequest{Key: []byte("k"), ProgressNotify: true}); !r.GetCreated() {
		t.Fatalf("create: %v", r)
	}
	_, w := f.last()
	w.ch <- []kv.WatchEvent{{Key: "k", Value: []byte("v"), Version: 3, Created: 3}}
	for seen := false; !seen; {
		r := recv(t, st)
		switch {
		case len(r.GetEvents()) == 1:
		case r.GetHeader().GetRevision() == 3:
			seen = true // progress after the event: its revision
		default:
			t.Fatalf("progress: %v", r)
		}
	}
}
