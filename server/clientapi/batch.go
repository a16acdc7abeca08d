package clientapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
)

// MaxBatchInflight bounds the ops of one Batch stream that run at once;
// past it the stream is not read until one finishes, so a client that
// sends faster than the node answers is slowed by gRPC's flow control.
const MaxBatchInflight = 4096

// Batch serves the Batch RPC: a goroutine reads ops and starts each on its
// own goroutine; results gather in a queue, and this handler sends
// whatever has gathered in one message whenever it can. It ends once the
// client closed its side (or went away) or Drain was called, and every op
// it took was answered.
func (g *grpcAPI) Batch(s caspaxospb.KV_BatchServer) error {
	b := &batchStream{g: g, s: s, wake: make(chan struct{}, 1), slots: make(chan struct{}, MaxBatchInflight),
		recvDone: make(chan struct{})}
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
	wake     chan struct{}
	slots    chan struct{} // one per op running
	recvDone chan struct{}
	running  sync.WaitGroup

	mu      sync.Mutex
	closed  bool // no op is started any more
	results []*caspaxospb.OpResult
}

// recv reads ops until the stream ends and starts each that may run.
func (b *batchStream) recv() {
	defer close(b.recvDone)
	for {
		req, err := b.s.Recv()
		if err != nil {
			return
		}
		for _, o := range req.GetOps() {
			select {
			case b.slots <- struct{}{}:
			case <-b.s.Context().Done():
				return
			}
			b.mu.Lock()
			if b.closed || b.g.isDraining() {
				// Draining: this op is not run and not answered; the
				// stream's OK end tells the client it was never taken.
				b.mu.Unlock()
				<-b.slots
				return
			}
			b.running.Add(1)
			b.mu.Unlock()
			go b.run(o)
		}
	}
}

func (b *batchStream) run(o *caspaxospb.Op) {
	defer b.running.Done()
	r := b.g.one(b.s.Context(), o)
	b.mu.Lock()
	b.results = append(b.results, r)
	b.mu.Unlock()
	<-b.slots
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// flush sends the results gathered so far, if any, in one message.
func (b *batchStream) flush() error {
	b.mu.Lock()
	results := b.results
	b.results = nil
	b.mu.Unlock()
	if len(results) == 0 {
		return nil
	}
	return b.s.Send(&caspaxospb.BatchResponse{Results: results})
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

// one runs an op of a Batch as its unary call would, and answers it.
func (g *grpcAPI) one(ctx context.Context, o *caspaxospb.Op) *caspaxospb.OpResult {
	r := &caspaxospb.OpResult{Id: o.GetId()}
	op := kv.Op{Key: string(o.GetKey()), Value: o.GetValue(), Version: o.GetVersion(), Delta: o.GetDelta()}
	var err error
	switch o.GetKind() {
	case caspaxospb.Op_GET:
		op.Kind = kv.OpGet
	case caspaxospb.Op_PUT:
		op.Kind = kv.OpPut
	case caspaxospb.Op_CREATE:
		op.Kind = kv.OpCreate
	case caspaxospb.Op_COMPARE_AND_SWAP:
		op.Kind = kv.OpCompareAndSwap
	case caspaxospb.Op_DELETE:
		op.Kind = kv.OpDelete
	case caspaxospb.Op_INCREMENT:
		op.Kind = kv.OpIncrement
	default:
		err = fmt.Errorf("%w %d", errBadKind, o.GetKind())
	}
	if err == nil {
		s, e := g.exec(ctx, op, time.Duration(o.GetTimeoutNanos()))
		switch {
		case e != nil:
			err = e
		case op.Kind == kv.OpGet && !s.Exists():
			err = kv.ErrNotFound
		case op.Kind == kv.OpGet:
			r.Value, r.Version = s.Value, s.Version
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
