package clientapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Batch serves the Batch RPC: a goroutine reads ops and hands each to a
// worker of the stream; results gather in a queue, and this handler sends
// whatever has gathered in one message whenever it can. It ends once the
// client closed its side (or went away) or Drain was called, and every op
// it took was answered.
//
// The ops taken and not yet sent back, and the bytes of the results
// waiting to be sent, are bounded (GRPCConfig.MaxBatchInflightOps,
// MaxBatchQueuedBytes): past either bound the stream is not read until
// results leave, so a client that sends faster than it reads (or never
// reads) is held back by gRPC's flow control instead of growing a queue.
//
// The stream authenticates once, when it opens (a refusal ends it at once
// with Unauthenticated); each op is then authorized as its unary call is.
func (g *grpcAPI) Batch(s caspaxospb.KV_BatchServer) error {
	p, err := authenticate(s.Context(), g.cfg.Guard, GRPCCredentials(s.Context()))
	if err != nil {
		return statusOf(err)
	}
	b := &batchStream{g: g, s: s, p: p, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), work: make(chan *caspaxospb.Op),
		recvDone: make(chan struct{}), quit: make(chan struct{})}
	defer close(b.quit) // idle workers leave
	defer b.deadline.close()
	go b.recv()
	var ended bool
	for {
		select {
		case <-b.wake:
		case <-b.recvDone:
			ended = true
		case <-g.draining:
			ended = true
		case <-s.Context().Done():
			ended = true
		}
		if ended {
			// Take nothing more, let what runs finish, answer it all.
			b.mu.Lock()
			b.closed = true
			b.mu.Unlock()
			b.running.Wait()
			return b.flush()
		}
		if err := b.flush(); err != nil {
			b.mu.Lock()
			b.closed = true
			b.mu.Unlock()
			return err
		}
	}
}

type batchStream struct {
	g        *grpcAPI
	s        caspaxospb.KV_BatchServer
	p        auth.Principal // who the stream acts as
	wake     chan struct{}
	room     chan struct{}       // results left: recv may take ops again
	work     chan *caspaxospb.Op // to an idle worker
	recvDone chan struct{}
	quit     chan struct{} // closed when the handler returned
	running  sync.WaitGroup
	deadline deadlines

	mu      sync.Mutex
	closed  bool // no op is started any more
	results []*caspaxospb.OpResult
	workers int // running or idle
	idle    int
	taken   int   // ops taken and not yet sent back
	queued  int64 // resultBytes of the results not yet sent
}

// maxIdleBatchWorkers bounds the idle workers a stream keeps: a burst of
// thousands of ops leaves that many goroutines, not thousands.
const maxIdleBatchWorkers = 128

// recv reads ops until the stream ends and hands each that may run to a
// worker: an idle one, a new one while fewer than MaxBatchInflightOps
// run, or else the first to finish. It takes an op only while the stream
// is within its bounds (waitRoom).
func (b *batchStream) recv() {
	defer close(b.recvDone)
	for {
		req, err := b.s.Recv()
		if err != nil {
			return
		}
		for _, o := range req.GetOps() {
			if !b.waitRoom() {
				return
			}
			b.mu.Lock()
			if b.closed || b.g.isDraining() {
				// Draining: this op is not run and not answered; the
				// stream's OK end tells the client it was never taken.
				b.mu.Unlock()
				return
			}
			b.running.Add(1)
			b.taken++
			b.mu.Unlock()
			select {
			case b.work <- o:
				continue
			default:
			}
			b.mu.Lock()
			spawn := b.workers < b.g.cfg.MaxBatchInflightOps
			if spawn {
				b.workers++
			}
			b.mu.Unlock()
			if spawn {
				go b.worker(o)
				continue
			}
			select {
			case b.work <- o:
			case <-b.s.Context().Done():
				b.running.Done()
				return
			}
		}
	}
}

// waitRoom waits until the stream may take one more op: fewer than
// MaxBatchInflightOps taken and not sent back, and fewer than
// MaxBatchQueuedBytes of results waiting. It reports false if the stream
// ended (or drains) first: the op is then not taken.
func (b *batchStream) waitRoom() bool {
	for {
		b.mu.Lock()
		ok := b.taken < b.g.cfg.MaxBatchInflightOps && b.queued < b.g.cfg.MaxBatchQueuedBytes
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-b.room:
		case <-b.quit:
			return false
		case <-b.g.draining:
			return false
		case <-b.s.Context().Done():
			return false
		}
	}
}

// worker runs ops until the stream is over, or until it finds enough
// others idle. Workers live on because a goroutine per op would grow a
// fresh stack for every op.
func (b *batchStream) worker(o *caspaxospb.Op) {
	for {
		ctx := b.deadline.context(b.s.Context(), b.g.timeout(time.Duration(o.GetTimeoutNanos())))
		r := b.g.one(ctx, b.p, o)
		b.mu.Lock()
		b.results = append(b.results, r)
		b.queued += int64(resultBytes(r))
		leave := b.idle >= maxIdleBatchWorkers
		if leave {
			b.workers--
		} else {
			b.idle++
		}
		b.mu.Unlock()
		b.running.Done()
		select {
		case b.wake <- struct{}{}:
		default:
		}
		if leave {
			return
		}
		select {
		case o = <-b.work:
			b.mu.Lock()
			b.idle--
			b.mu.Unlock()
		case <-b.quit:
			return
		}
	}
}

// batchReplyBytes bounds the results of one BatchResponse (one larger
// result goes alone), well under a client's receive limit (the Go
// client's is 256 MiB, gRPC's default 4 MiB).
const batchReplyBytes = 1 << 20

// resultBytes is about a result's encoded size: its variable parts and a
// bound on the rest.
func resultBytes(r *caspaxospb.OpResult) int {
	return len(r.GetValue()) + len(r.GetMessage()) + len(r.GetError().GetCode()) + 64
}

// flush sends the results gathered so far, if any, in as few messages as
// batchReplyBytes allows.
func (b *batchStream) flush() error {
	b.mu.Lock()
	results := b.results
	b.results = nil
	b.mu.Unlock()
	for len(results) > 0 {
		n, size := 0, 0
		for n < len(results) && (n == 0 || size+resultBytes(results[n]) <= batchReplyBytes) {
			size += resultBytes(results[n])
			n++
		}
		if err := b.s.Send(&caspaxospb.BatchResponse{Results: results[:n]}); err != nil {
			return err
		}
		b.mu.Lock()
		b.taken -= n
		b.queued -= int64(size)
		b.mu.Unlock()
		select {
		case b.room <- struct{}{}:
		default:
		}
		results = results[n:]
	}
	return nil
}

// deadlineGrain is how close the deadlines of a stream's ops must be to
// share one context; an op's own is never later than it asked.
const deadlineGrain = 5 * time.Millisecond

// deadlines hands out contexts that end at an op's deadline, rounded down
// to deadlineGrain, sharing one context among the ops of a stream that
// round to the same instant: a context with a deadline costs a timer and
// a channel, which is much next to a read served from memory.
type deadlines struct {
	mu   sync.Mutex
	ctxs []sharedDeadline // by deadline, oldest first
	now  func() time.Time // nil: time.Now; tests step its wall clock
}

type sharedDeadline struct {
	at     time.Time
	ctx    context.Context
	cancel context.CancelFunc
}

func (d *deadlines) context(parent context.Context, timeout time.Duration) context.Context {
	now := time.Now()
	if d.now != nil {
		now = d.now()
	}
	// Rounded down on the wall clock, but through Add, so that the deadline
	// keeps now's monotonic reading: Truncate would strip it, and then
	// comparing and timing deadlines would follow the wall clock (a step
	// of the system clock ended every context of the stream, or none).
	end := now.Add(timeout)
	at := end.Add(-time.Duration(end.UnixNano() % int64(deadlineGrain)))
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for n < len(d.ctxs) && !d.ctxs[n].at.After(now) {
		d.ctxs[n].cancel() // over: its timer has ended it already
		n++
	}
	d.ctxs = d.ctxs[n:]
	for i := len(d.ctxs) - 1; i >= 0 && !d.ctxs[i].at.Before(at); i-- {
		if d.ctxs[i].at.Equal(at) {
			return d.ctxs[i].ctx
		}
	}
	ctx, cancel := context.WithDeadline(parent, at)
	i := len(d.ctxs)
	for i > 0 && d.ctxs[i-1].at.After(at) {
		i--
	}
	d.ctxs = append(d.ctxs, sharedDeadline{})
	copy(d.ctxs[i+1:], d.ctxs[i:])
	d.ctxs[i] = sharedDeadline{at: at, ctx: ctx, cancel: cancel}
	return ctx
}

// close ends every context handed out; the ops that used them are over.
func (d *deadlines) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.ctxs {
		c.cancel()
	}
	d.ctxs = nil
}

func (g *grpcAPI) isDraining() bool {
	select {
	case <-g.draining:
		return true
	default:
		return false
	}
}

// errBadKind: an Op of a kind this server does not know.
var errBadKind = fmt.Errorf("%w: unknown op kind", errBadRequest)

// opKinds maps the kinds of a Batch's ops onto the store's.
var opKinds = map[caspaxospb.Op_Kind]kv.OpKind{
	caspaxospb.Op_GET:              kv.OpGet,
	caspaxospb.Op_PUT:              kv.OpPut,
	caspaxospb.Op_CREATE:           kv.OpCreate,
	caspaxospb.Op_COMPARE_AND_SWAP: kv.OpCompareAndSwap,
	caspaxospb.Op_DELETE:           kv.OpDelete,
	caspaxospb.Op_INCREMENT:        kv.OpIncrement,
}

// one runs an op of a Batch as its unary call would, and answers it.
func (g *grpcAPI) one(ctx context.Context, p auth.Principal, o *caspaxospb.Op) *caspaxospb.OpResult {
	r := &caspaxospb.OpResult{Id: o.GetId()}
	op := kv.Op{Key: string(o.GetKey()), Value: o.GetValue(), Version: o.GetVersion(), Delta: o.GetDelta(), RequestID: o.GetRequestId(), Lease: o.GetLease()}
	var err error
	kind, ok := opKinds[o.GetKind()]
	op.Kind = kind
	if !ok {
		err = fmt.Errorf("%w %d", errBadKind, o.GetKind())
	}
	if err == nil {
		s, e := g.exec(ctx, p, op)
		switch {
		case e != nil:
			err = e
		case op.Kind == kv.OpGet && !s.Exists():
			err = kv.ErrNotFound
		case op.Kind == kv.OpGet:
			r.Value, r.Version, r.Lease = s.Value, s.Version, s.Lease
		case op.Kind == kv.OpIncrement:
			r.Version = s.Version
			r.Integer, err = kv.Integer(s)
		default:
			r.Version = s.Version
		}
	}
	if err != nil {
		c, current := classify(err)
		r.Error = &caspaxospb.ErrorInfo{Code: c.code, CurrentVersion: current}
		r.Message = err.Error()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			r.Message = "the client went away: " + r.Message
		}
	}
	return r
}
