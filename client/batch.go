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

// batchBytes bounds the ops of one BatchRequest (one op larger than it
// goes alone), and batchOpBytes the ops that go over Batch at all: a
// larger one is sent as its unary call, so that a message never nears the
// node's receive limit (at least 4 MiB) and an op over the node's value
// limit is refused by itself (value_too_large) rather than breaking the
// stream and every op in flight on it.
const (
	batchBytes   = 1 << 20
	batchOpBytes = 256 << 10
)

// opBytes is about an op's encoded size: its variable parts and a bound
// on the rest.
func opBytes(o *caspaxospb.Op) int { return len(o.GetKey()) + len(o.GetValue()) + 48 }

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

// drop ends st if it is the current stream, so that the next call opens
// another; its ops all fail as the one that found it unusable did.
func (m *mux) drop(st *stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == st {
		m.cur = nil
		st.cancel()
	}
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
			n, size := 0, 0
			for n < len(st.queue) && (n == 0 || size+opBytes(st.queue[n]) <= batchBytes) {
				size += opBytes(st.queue[n])
				n++
			}
			ops := st.queue[:n:n]
			st.queue = st.queue[n:]
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
	if opBytes(op) > batchOpBytes {
		return c.unary(ctx, idempotent, op)
	}
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
	var last, refused error
	for i, idx := range c.order(start, routed) {
		if !c.ready(ctx, c.conns[idx]) {
			last = fmt.Errorf("endpoint %s not connected", c.cfg.Endpoints[idx])
			continue
		}
		st, err := c.muxes[idx].stream()
		if typed, ok := authRefusal(err); ok {
			return nil, typed
		}
		if typed, ok := loginRefusal(err); ok {
			refused = typed // nothing ran; a node that reaches a quorum may log in
			continue
		}
		if err != nil {
			last = err
			continue
		}
		if i > 0 {
			// An earlier stream's sender may still read the one it took.
			op = proto.Clone(op).(*caspaxospb.Op)
		}
		r, left, err := st.call(ctx, op)
		if err == nil && r.GetError().GetCode() == codeOverloaded {
			// Refused, nothing applied: the next endpoint may take it.
			c.suspect(idx)
			refused = fromInfo(r.GetError(), r.GetMessage())
			continue
		}
		if err == nil {
			c.trust(idx)
			if idx != routed {
				c.remember(idx)
			}
			if info := r.GetError(); info != nil {
				if info.GetCode() == "unauthenticated" {
					// The stream's credentials no longer hold (it opened
					// before auth was enabled): the next call opens
					// another, with a fresh token.
					c.muxes[idx].drop(st)
				}
				return nil, fromInfo(info, r.GetMessage())
			}
			return r, nil
		}
		if typed, ok := authRefusal(err); ok {
			return nil, typed // the stream was refused as it opened: nothing ran
		}
		if typed, ok := loginRefusal(err); ok {
			refused = typed
			continue
		}
		if ctx.Err() != nil {
			c.suspect(idx) // no answer in time: a silent node?
		}
		switch {
		case left && !idempotent:
			return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		case ctx.Err() != nil && refused != nil:
			return nil, refused
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		last = err
	}
	if refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, last)
}

// unary runs op as its unary call (for ops too large for Batch).
func (c *Client) unary(ctx context.Context, idempotent bool, op *caspaxospb.Op) (*caspaxospb.OpResult, error) {
	if _, ok := caspaxospb.Op_Kind_name[int32(op.GetKind())]; !ok || op.GetKind() == caspaxospb.Op_KIND_UNSPECIFIED {
		return nil, fmt.Errorf("%w: op kind %v", ErrBadRequest, op.GetKind())
	}
	r := &caspaxospb.OpResult{}
	err := c.call(ctx, idempotent, func(conn *grpc.ClientConn) error {
		kc := caspaxospb.NewKVClient(conn)
		var err error
		switch op.GetKind() {
		case caspaxospb.Op_GET:
			var g *caspaxospb.GetResponse
			g, err = kc.Get(ctx, &caspaxospb.GetRequest{Key: op.GetKey()})
			r.Value, r.Version, r.Lease = g.GetValue(), g.GetVersion(), g.GetLease()
		case caspaxospb.Op_PUT:
			var p *caspaxospb.PutResponse
			p, err = kc.Put(ctx, &caspaxospb.PutRequest{Key: op.GetKey(), Value: op.GetValue(), RequestId: op.GetRequestId(), Lease: op.GetLease()})
			r.Version = p.GetVersion()
		case caspaxospb.Op_CREATE:
			var p *caspaxospb.PutResponse
			p, err = kc.Create(ctx, &caspaxospb.CreateRequest{Key: op.GetKey(), Value: op.GetValue(), RequestId: op.GetRequestId(), Lease: op.GetLease()})
			r.Version = p.GetVersion()
		case caspaxospb.Op_COMPARE_AND_SWAP:
			var p *caspaxospb.PutResponse
			p, err = kc.CompareAndSwap(ctx, &caspaxospb.CompareAndSwapRequest{Key: op.GetKey(), Version: op.GetVersion(), Value: op.GetValue(), RequestId: op.GetRequestId(),
				Lease: op.GetLease()})
			r.Version = p.GetVersion()
		case caspaxospb.Op_DELETE:
			req := &caspaxospb.DeleteRequest{Key: op.GetKey(), RequestId: op.GetRequestId()}
			if v := op.GetVersion(); v != 0 {
				req.IfVersion = &v
			}
			var d *caspaxospb.DeleteResponse
			d, err = kc.Delete(ctx, req)
			r.Version = d.GetVersion()
		case caspaxospb.Op_INCREMENT:
			var i *caspaxospb.IncrementResponse
			i, err = kc.Increment(ctx, &caspaxospb.IncrementRequest{Key: op.GetKey(), Delta: op.GetDelta(), RequestId: op.GetRequestId()})
			r.Integer, r.Version = i.GetValue(), i.GetVersion()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}
