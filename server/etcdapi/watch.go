package etcdapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
)

// etcd's Watch service on caspaxos's watches (server/watch through
// Config.Watches; COORDINATION.md, Watch). Each event is a state confirmed
// by a linearizable read; a key's changes are coalesced (a slow watcher
// gets the latest state, not every state), so an event's mod_revision may
// jump by more than one. The mapping of each event's kv is KV's (doc.go).
//
// Resuming without a global revision:
//
//   - One key: start_revision R delivers the key's current state if its
//     version is at least R, then its changes; start_revision 0 delivers
//     only the changes after the watch began. header.revision is the
//     key's version (the last delivered, or the one the watch began at;
//     at least 1 in the created response), so clientv3 resumes a broken
//     stream where nothing is skipped: at worst the state it has is sent
//     again, as etcd sends again the events at the revision it resumes at.
//   - A prefix: start_revision 0 delivers the changes after the listing
//     that begins the watch saw each key. A prefix watch cannot resume at a
//     revision (revisions are per key, and clientv3 resumes at the last
//     event's mod_revision + 1 across keys, which would skip events): any
//     start_revision ≠ 0 is answered with a compaction (compact_revision
//     set, the watch cancelled), so that the client relists, as it does
//     after etcd compacted. The created and progress responses of a prefix
//     watch carry header.revision prefixRevision, so that a clientv3 whose
//     stream broke before any event resumes at a revision too, and is
//     told to relist rather than silently restarted.
//
// prev_kv: an event's prev_kv is the state of its key that the watch knew
// last (kv.WatchEvent.Prev), a chosen state: the one it delivered last, or
// the one it began from when it knew it (a key watch from now reads the
// key first; a prefix watch's listing). It is the state just before the
// event's unless the event is a jump: then it is the last state delivered,
// older, and its mod_revision (below the event's mod_revision − 1) shows
// it. No prev_kv: the key was deleted or absent when last known (a put
// that created it, as etcd), or the watch knew no state before (a key
// watch resumed at a start_revision whose key was already past it: the
// state before was never seen by this watch; a key a prefix's listing gave
// without its value, a large one, that changed before the watch read it);
// a put's create_revision = mod_revision tells a creation apart. A DELETE
// carries the last live value known. clientv3 resumes a key watch at the
// last event's mod_revision + 1: the watch's first read finds that state
// again if the key did not change meanwhile, and knows it (server/watch);
// otherwise the first event after the break has no prev_kv. Ranges other than one key or
// a prefix ([key, end) with end the prefix's end, as clientv3.WithPrefix
// sends; or everything) are refused. Refusals are etcd's: a created and
// cancelled response whose cancel_reason says why (clientv3 returns it as
// the watch channel's error).

// prefixRevision is header.revision of a prefix watch's created and
// progress responses (see above): not 0, so that clientv3 resumes at a
// revision, which is answered with a compaction.
const prefixRevision = 1

// maxWatchesPerStream bounds the watches of one stream.
const maxWatchesPerStream = kv.MaxWatchItems

// watchStream is one Watch call: its watches by ID.
type watchStream struct {
	s      *Server
	st     etcdpb.Watch_WatchServer
	c      *call // the stream's principal and context, for permissions
	sendMu sync.Mutex
	failed chan error // a watch's error ends the stream

	mu      sync.Mutex
	watches map[int64]*etcdWatch
	nextID  int64
}

// etcdWatch is one watch of a stream.
type etcdWatch struct {
	id       int64
	key      string // the key, or the prefix
	prefix   bool
	noPut    bool
	noDelete bool
	progress bool
	prevKV   bool
	w        clientapi.Watcher
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when pump returned

	mu   sync.Mutex
	rev  int64 // a key watch's header.revision: the version delivered through
	sent bool  // events sent since the last progress tick
}

// Watch serves Watch.Watch: create, cancel and progress requests on one
// stream, any number of watches (up to maxWatchesPerStream). The stream
// authenticates once, when it opens; a key watch needs read on its key,
// and a prefix watch delivers only the keys the caller may read. Watches
// hold no admission slot and no deadline.
func (s *Server) Watch(st etcdpb.Watch_WatchServer) error {
	if s.cfg.Watches == nil {
		return status.Error(codes.Unimplemented, "caspaxos: this node serves no watches")
	}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	p := auth.Principal{Open: true}
	if s.cfg.Guard != nil {
		var err error
		if p, err = s.cfg.Guard.Authenticate(ctx, credentialsOf(ctx)); err != nil {
			return statusOf(err)
		}
	}
	ws := &watchStream{s: s, st: st, c: &call{ctx: ctx, p: p, s: s}, failed: make(chan error, 1), watches: map[int64]*etcdWatch{}}
	defer ws.closeAll()
	reqs := make(chan *etcdpb.WatchRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case r := <-reqs:
			if err := ws.handle(r); err != nil {
				return err
			}
		case err := <-recvErr:
			if err == io.EOF {
				return nil
			}
			return err
		case err := <-ws.failed:
			return statusOf(err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle runs one request; an error ends the stream.
func (ws *watchStream) handle(r *etcdpb.WatchRequest) error {
	switch u := r.GetRequestUnion().(type) {
	case *etcdpb.WatchRequest_CreateRequest:
		return ws.create(u.CreateRequest)
	case *etcdpb.WatchRequest_CancelRequest:
		return ws.cancelWatch(u.CancelRequest.GetWatchId())
	case *etcdpb.WatchRequest_ProgressRequest:
		return ws.progressAll()
	}
	return nil // as etcd: an empty request is ignored
}

func (ws *watchStream) send(r *etcdpb.WatchResponse) error {
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	return ws.st.Send(r)
}

// refuse answers a create that is refused: created and cancelled, with why.
func (ws *watchStream) refuse(err error) error {
	reason := err.Error()
	if code, _ := kv.Code(err); code == kv.CodePermissionDenied {
		reason = msgPermissionDenied
	}
	return ws.send(&etcdpb.WatchResponse{Header: ws.s.header(0), WatchId: -1, Created: true, Canceled: true, CancelReason: reason})
}

// watchSpec is what a create request asks, checked.
type watchSpec struct {
	key             string // the key, or the prefix
	prefix          bool
	start           int64
	noPut, noDelete bool
	progress        bool
	prevKV          bool
}

// checkCreate checks a create request against what caspaxos can honour.
func (s *Server) checkCreate(r *etcdpb.WatchCreateRequest) (watchSpec, error) {
	sp := watchSpec{key: string(r.GetKey()), start: r.GetStartRevision(), progress: r.GetProgressNotify(), prevKV: r.GetPrevKv()}
	if sp.start < 0 {
		return sp, fmt.Errorf("%w: start_revision %d is negative", errBadRequest, sp.start)
	}
	for _, f := range r.GetFilters() {
		switch f {
		case etcdpb.WatchCreateRequest_NOPUT:
			sp.noPut = true
		case etcdpb.WatchCreateRequest_NODELETE:
			sp.noDelete = true
		default:
			return sp, fmt.Errorf("%w: unknown filter %d", errBadRequest, f)
		}
	}
	end := r.GetRangeEnd()
	switch {
	case len(end) == 0:
		if err := s.cfg.Limits.CheckKey(sp.key); err != nil {
			return sp, err
		}
		return sp, kv.CheckClientKey(sp.key)
	case bytes.Equal(end, []byte{0}) && (len(r.GetKey()) == 0 || bytes.Equal(r.GetKey(), []byte{0})):
		// Everything: clientv3 sends Watch("", WithPrefix()) as ["\x00", "\x00").
		sp.key, sp.prefix = "", true
	case len(r.GetKey()) > 0 && bytes.Equal(end, prefixEnd(r.GetKey())):
		sp.prefix = true
	default:
		return sp, fmt.Errorf("%w: a watch of [%q, %q): caspaxos watches one key or a prefix (range_end the prefix's end, as clientv3.WithPrefix sends it)", errUnsupported, r.GetKey(), end)
	}
	if len(sp.key) > s.cfg.Limits.MaxKeyBytes {
		return sp, fmt.Errorf("%w: prefix longer than %d bytes", kv.ErrKeyTooLarge, s.cfg.Limits.MaxKeyBytes)
	}
	return sp, kv.CheckClientKey(sp.key)
}

// prefixEnd is the end of the range of keys that begin with p (etcd's
// GetPrefixRangeEnd): "\x00" when every byte of p is 0xff.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

// create starts a watch and answers created (or refuses it), then starts
// its pump: the created response precedes every event.
func (ws *watchStream) create(r *etcdpb.WatchCreateRequest) error {
	sp, err := ws.s.checkCreate(r)
	if err == nil && !sp.prefix {
		err = ws.c.allowed(auth.Access{Perm: auth.PermRead, Key: sp.key})
	}
	if err != nil {
		return ws.refuse(err)
	}
	ws.mu.Lock()
	id := r.GetWatchId()
	switch {
	case len(ws.watches) >= maxWatchesPerStream:
		err = fmt.Errorf("%w: %d watches on one stream; open another stream", errBadRequest, maxWatchesPerStream)
	case id == 0:
		for ws.watches[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	case ws.watches[id] != nil:
		err = fmt.Errorf("%w: watch ID %d is in use on this stream", errBadRequest, id)
	}
	ws.mu.Unlock()
	if err != nil {
		return ws.refuse(err)
	}
	if sp.prefix && sp.start != 0 {
		// No resume across keys: tell the client to relist.
		if err := ws.send(&etcdpb.WatchResponse{Header: ws.s.header(prefixRevision), WatchId: id, Created: true}); err != nil {
			return err
		}
		return ws.send(&etcdpb.WatchResponse{Header: ws.s.header(0), WatchId: id, Canceled: true, CompactRevision: sp.start + 1,
			CancelReason: fmt.Sprintf("caspaxos: a prefix watch cannot resume at revision %d: revisions are per key, there is no global one to resume at; list the prefix again and watch it from now (start_revision 0)", sp.start)})
	}
	ew, err := ws.start(id, sp)
	if err != nil {
		return ws.refuse(err)
	}
	rev := int64(prefixRevision)
	if !sp.prefix {
		// clientv3 resumes a watch created at start_revision 0 at this
		// revision itself (not one past it): the key's version, whose
		// state it then gets again, and never 0, at which it would resume
		// from now and miss a creation while its stream was broken.
		rev = max(ew.rev, 1)
	}
	if err := ws.send(&etcdpb.WatchResponse{Header: ws.s.header(uint64(rev)), WatchId: id, Created: true}); err != nil {
		ew.cancel()
		ew.w.Close()
		return err
	}
	ws.mu.Lock()
	ws.watches[id] = ew
	ws.mu.Unlock()
	go ws.pump(ew)
	return nil
}

// start starts the watch of sp: a key from start_revision − 1, or from its
// current version (read first, and known: the prev_kv of its first event)
// when start_revision is 0; a prefix from its listing
// (kv.WatchRequest.Changes).
func (ws *watchStream) start(id int64, sp watchSpec) (*etcdWatch, error) {
	ctx, cancel := context.WithTimeout(ws.c.ctx, ws.s.cfg.RequestTimeout)
	defer cancel()
	req := kv.WatchRequest{Changes: true}
	var from uint64
	if sp.prefix {
		req.Prefixes = []string{sp.key}
	} else {
		req.Keys = []string{sp.key}
		if sp.start > 0 {
			from = uint64(sp.start) - 1
		} else {
			cur, err := ws.s.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: sp.key})
			if err != nil {
				return nil, err
			}
			from = cur.Version
			if cur.Version > 0 {
				req.Known = map[string]protocol.State{sp.key: cur}
			}
		}
		req.From = map[string]uint64{sp.key: from}
	}
	w, err := ws.s.cfg.Watches.Watch(ctx, req)
	if err != nil {
		return nil, err
	}
	wctx, wcancel := context.WithCancel(ws.c.ctx)
	return &etcdWatch{id: id, key: sp.key, prefix: sp.prefix, noPut: sp.noPut, noDelete: sp.noDelete, progress: sp.progress, prevKV: sp.prevKV,
		w: w, ctx: wctx, cancel: wcancel, done: make(chan struct{}), rev: int64(from)}, nil
}

// pump sends a watch's events until it is cancelled, and its progress
// every WatchProgressInterval without events, if asked.
func (ws *watchStream) pump(ew *etcdWatch) {
	defer close(ew.done)
	next := time.Now().Add(ws.s.cfg.WatchProgressInterval)
	for {
		ctx, cancel := ew.ctx, context.CancelFunc(func() {})
		if ew.progress {
			ctx, cancel = context.WithDeadline(ew.ctx, next)
		}
		evs, err := ew.w.Next(ctx)
		cancel()
		switch {
		case ew.ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded) && ew.progress:
			next = time.Now().Add(ws.s.cfg.WatchProgressInterval)
			if ew.idle() {
				if err := ws.send(ws.progressOf(ew)); err != nil {
					return
				}
			}
			continue
		case err != nil:
			select {
			case ws.failed <- fmt.Errorf("caspaxos: watch of %q: %w", ew.key, err):
			default:
			}
			return
		}
		out, err := ws.events(ew, evs)
		if err != nil {
			select {
			case ws.failed <- err:
			default:
			}
			return
		}
		if len(out) == 0 {
			continue
		}
		last := out[len(out)-1].GetKv().GetModRevision()
		var rev uint64
		if !ew.prefix {
			rev = uint64(last)
		}
		if err := ws.send(&etcdpb.WatchResponse{Header: ws.s.header(rev), WatchId: ew.id, Events: out}); err != nil {
			return
		}
		// Only once sent: a progress response must never claim an event
		// that the client may not have received.
		ew.mu.Lock()
		ew.sent = true
		if !ew.prefix {
			ew.rev = last
		}
		ew.mu.Unlock()
	}
}

// idle reports whether no event was sent since the last call.
func (ew *etcdWatch) idle() bool {
	ew.mu.Lock()
	defer ew.mu.Unlock()
	sent := ew.sent
	ew.sent = false
	return !sent
}

// events converts a watch's events, less those its filters and the
// caller's permissions leave out.
func (ws *watchStream) events(ew *etcdWatch, evs []kv.WatchEvent) ([]*mvccpb.Event, error) {
	var out []*mvccpb.Event
	for _, ev := range evs {
		if (ev.Deleted && ew.noDelete) || (!ev.Deleted && ew.noPut) {
			continue
		}
		if ew.prefix {
			err := ws.c.allowed(auth.Access{Perm: auth.PermRead, Key: ev.Key})
			if errors.Is(err, kv.ErrPermissionDenied) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, watchEvent(ev, ew.prevKV))
	}
	return out, nil
}

// watchEvent is the etcd event of ev: a put with the key's kv as Range
// gives it, or a delete whose mod_revision is the tombstone's version (0
// once the tombstone was collected); with prevKV, prev_kv is ev.Prev when
// it was live (see the top of this file).
func watchEvent(ev kv.WatchEvent, prevKV bool) *mvccpb.Event {
	out := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: keyValue(ev.Key, protocol.State{Value: ev.Value, Version: ev.Version, Created: ev.Created, Attrs: protocol.Attrs{Lease: ev.Lease}}, false)}
	if ev.Deleted {
		out = &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte(ev.Key), ModRevision: int64(ev.Version)}}
	}
	if prevKV && ev.Prev.Exists() {
		out.PrevKv = keyValue(ev.Key, ev.Prev, false)
	}
	return out
}

// progressOf is a watch's progress response: the version its key was
// delivered through, or prefixRevision for a prefix.
func (ws *watchStream) progressOf(ew *etcdWatch) *etcdpb.WatchResponse {
	rev := int64(prefixRevision)
	if !ew.prefix {
		ew.mu.Lock()
		rev = ew.rev
		ew.mu.Unlock()
	}
	return &etcdpb.WatchResponse{Header: ws.s.header(uint64(rev)), WatchId: ew.id}
}

// progressAll answers a progress request: each watch's progress, by its
// own ID (etcd broadcasts one store revision; here each watch has its own).
func (ws *watchStream) progressAll() error {
	ws.mu.Lock()
	var all []*etcdWatch
	for _, ew := range ws.watches {
		all = append(all, ew)
	}
	ws.mu.Unlock()
	for _, ew := range all {
		if err := ws.send(ws.progressOf(ew)); err != nil {
			return err
		}
	}
	return nil
}

// cancelWatch ends watch id and answers cancelled once its pump stopped,
// so that no event of it follows; an unknown ID is not answered (etcd's
// way).
func (ws *watchStream) cancelWatch(id int64) error {
	ws.mu.Lock()
	ew := ws.watches[id]
	delete(ws.watches, id)
	ws.mu.Unlock()
	if ew == nil {
		return nil
	}
	ew.stop()
	return ws.send(&etcdpb.WatchResponse{Header: ws.s.header(0), WatchId: id, Canceled: true})
}

func (ew *etcdWatch) stop() {
	ew.cancel()
	ew.w.Close()
	<-ew.done
}

// closeAll ends every watch of the stream.
func (ws *watchStream) closeAll() {
	ws.mu.Lock()
	all := ws.watches
	ws.watches = map[int64]*etcdWatch{}
	ws.mu.Unlock()
	for _, ew := range all {
		ew.stop()
	}
}
