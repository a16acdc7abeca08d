package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// The KV operations of a Client travel over one Batch stream per endpoint
// (api/caspaxos.proto): ops that wait together go in one message, and
// results come back the same way, so many concurrent calls cost a few
// messages rather than a call each.

// mux holds the Batch stream of one endpoint, opening a new one when the
// last ended.
type mux struct {
	conn *grpc.ClientConn
	ctx  context.Context // the client's; Close ends every stream
	mu   sync.Mutex
	cur  *stream
}

func (m *mux) stream() (*stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil && !m.cur.isEnded() {
		return m.cur, nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	s, err := caspaxospb.NewKVClient(m.conn).Batch(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &stream{s: s, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{}),
		pending: make(map[uint64]*waiter)}
	go st.send()
	go st.recv()
	m.cur = st
	return st, nil
}

// stream is one Batch stream: a queue of ops a goroutine sends, and the
// ops sent that wait for their results, which another goroutine receives.
type stream struct {
	s      caspaxospb.KV_BatchClient
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{} // closed when the stream ended

	mu      sync.Mutex
	nextID  uint64
	queue   []*caspaxospb.Op
	pending map[uint64]*waiter
	ended   bool
	clean   bool  // the server ended it with an OK status
	err     error // why it ended
}

type waiter struct {
	ch   chan *caspaxospb.OpResult // buffered for the one result
	sent bool                      // taken off the queue to be sent
}

func (st *stream) isEnded() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ended
}

// call sends op and waits for its result. left reports whether op may have
// reached the server when no result came: false if it provably did not
// (it never left the queue, or the server ended the stream cleanly, having
// answered everything it took).
func (st *stream) call(ctx context.Context, op *caspaxospb.Op) (r *caspaxospb.OpResult, left bool, err error) {
	w := &waiter{ch: make(chan *caspaxospb.OpResult, 1)}
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return nil, false, st.err
	}
	st.nextID++
	op.Id = st.nextID
	st.pending[op.Id] = w
	st.queue = append(st.queue, op)
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	select {
	case r := <-w.ch:
		return r, true, nil
	case <-st.done:
	case <-ctx.Done():
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	select {
	case r := <-w.ch: // it came in meanwhile
		return r, true, nil
	default:
	}
	delete(st.pending, op.Id)
	if !w.sent {
		st.queue = slices.DeleteFunc(st.queue, func(o *caspaxospb.Op) bool { return o == op })
	}
	if ctx.Err() != nil {
		return nil, w.sent, ctx.Err()
	}
	return nil, w.sent && !st.clean, st.err
}

// send sends what the queue holds, in one message per pass.
func (st *stream) send() {
	for {
		select {
		case <-st.wake:
		case <-st.done:
			return
		}
		for {
			st.mu.Lock()
			ops := st.queue
			st.queue = nil
			for _, o := range ops {
				st.pending[o.Id].sent = true
			}
			st.mu.Unlock()
			if len(ops) == 0 {
				break
			}
			if err := st.s.Send(&caspaxospb.BatchRequest{Ops: ops}); err != nil {
				// The stream broke; recv learns why and ends it.
				st.cancel()
				return
			}
		}
	}
}

// recv hands results to their callers until the stream ends.
func (st *stream) recv() {
	for {
		resp, err := st.s.Recv()
		if err != nil {
			st.end(err)
			return
		}
		st.mu.Lock()
		for _, r := range resp.GetResults() {
			if w := st.pending[r.GetId()]; w != nil {
				delete(st.pending, r.GetId())
				w.ch <- r
			}
		}
		st.mu.Unlock()
	}
}

func (st *stream) end(err error) {
	st.mu.Lock()
	st.ended, st.clean = true, errors.Is(err, io.EOF)
	if st.clean {
		err = errors.New("the node ended the stream (it is shutting down)")
	}
	st.err = err
	st.mu.Unlock()
	st.cancel()
	close(st.done)
}

// do runs op on endpoints in turn, starting with the last that worked (a
// write: with its key's home, see route.go), as call does for unary calls: an op that provably never reached a node
// moves on to the next endpoint; one that may have reached it moves on only
// if it is idempotent, and otherwise is an unknown outcome.
func (c *Client) do(ctx context.Context, idempotent bool, op *caspaxospb.Op) (*caspaxospb.OpResult, error) {
	if d, ok := ctx.Deadline(); ok {
		op.TimeoutNanos = max(int64(time.Until(d)), 1)
	}
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	routed := -1
	if !idempotent && !c.cfg.NoRouting {
		c.learn.Do(func() { go c.learnRoutes() })
		if idx, ok := c.routes.Load().home(op.GetKey()); ok {
			routed = idx
		}
	}
	var last error
	for i := range c.conns {
		idx := (start + i) % len(c.conns)
		switch {
		case routed < 0:
		case i == 0:
			idx = routed
		case idx == routed:
			idx = start // the home went first; the preferred takes its turn
		}
		if !c.ready(ctx, c.conns[idx]) {
			last = fmt.Errorf("endpoint %s not connected", c.cfg.Endpoints[idx])
			continue
		}
		st, err := c.muxes[idx].stream()
		if err != nil {
			last = err
			continue
		}
		if i > 0 {
			// An earlier stream's sender may still read the one it took.
			op = proto.Clone(op).(*caspaxospb.Op)
		}
		r, left, err := st.call(ctx, op)
		if err == nil {
			if idx != routed {
				c.remember(idx)
			}
			if info := r.GetError(); info != nil {
				return nil, fromInfo(info, r.GetMessage())
			}
			return r, nil
		}
		switch {
		case left && !idempotent:
			return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		last = err
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, last)
}
