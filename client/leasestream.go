package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// The background KeepAlive helpers of a Client renew their leases over one
// LeaseKeepAlives stream per endpoint (api/caspaxos.proto), shared by all
// of them: a renewal costs a message, not a call. A broken stream fails
// the renewals in flight on it (each helper tries again on its next tick)
// and the next renewal opens another. Against a node that does not serve
// the stream (Unimplemented), renewals fall back to the unary call.

// keepAliveMux holds the keep-alive stream of one endpoint.
type keepAliveMux struct {
	mu    sync.Mutex
	cur   *keepAliveStream
	unary bool // the node does not serve the stream
}

// keepAliveStream is one LeaseKeepAlives stream: the renewals sent on it
// that wait for their answers, at most one per lease, so that an answer
// is always that of the request its waiter sent (answers of different
// leases come in any order).
type keepAliveStream struct {
	s      caspaxospb.Lease_LeaseKeepAlivesClient
	cancel context.CancelFunc
	sendMu sync.Mutex
	mu     sync.Mutex
	wait   map[uint64]*keepAliveWaiter // by lease, one in flight each
	done   chan struct{}               // closed when the stream ended; err says why
	err    error
}

// keepAliveWaiter is a renewal sent that waits for its answer.
type keepAliveWaiter struct {
	ch       chan *caspaxospb.LeaseKeepAliveResponse // buffered for the one answer
	answered chan struct{}                           // closed once it is in ch
}

// errNoKeepAliveStream: a node that does not serve LeaseKeepAlives.
var errNoKeepAliveStream = errors.New("caspaxos/client: the node does not serve the keep-alive stream")

// stream returns the endpoint's open stream, opening one if there is none.
func (m *keepAliveMux) stream(c *Client, idx int) (*keepAliveStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unary {
		return nil, errNoKeepAliveStream
	}
	if m.cur != nil {
		select {
		case <-m.cur.done:
		default:
			return m.cur, nil
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s, err := caspaxospb.NewLeaseClient(c.conns[idx]).LeaseKeepAlives(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &keepAliveStream{s: s, cancel: cancel, wait: make(map[uint64]*keepAliveWaiter), done: make(chan struct{})}
	go st.recv(m)
	m.cur = st
	return st, nil
}

// recv hands each answer to its waiter until the stream ends.
func (st *keepAliveStream) recv(m *keepAliveMux) {
	for {
		r, err := st.s.Recv()
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				m.mu.Lock()
				m.unary = true
				m.mu.Unlock()
				err = errNoKeepAliveStream
			}
			st.mu.Lock()
			st.err = fmt.Errorf("caspaxos/client: keep-alive stream ended: %w", err)
			st.mu.Unlock()
			close(st.done)
			st.cancel()
			return
		}
		st.mu.Lock()
		w := st.wait[r.GetId()]
		delete(st.wait, r.GetId())
		st.mu.Unlock()
		if w != nil {
			w.ch <- r
			close(w.answered)
		}
	}
}

// renew sends one renewal of lease id and waits for its answer. A second
// renewal of a lease already in flight on the stream waits for the first
// to be answered, then sends its own.
func (st *keepAliveStream) renew(ctx context.Context, id uint64) (*caspaxospb.LeaseKeepAliveResponse, error) {
	w := &keepAliveWaiter{ch: make(chan *caspaxospb.LeaseKeepAliveResponse, 1), answered: make(chan struct{})}
	for {
		st.mu.Lock()
		other, busy := st.wait[id]
		if !busy {
			st.wait[id] = w
		}
		st.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-other.answered: // its turn is over: try again
		case <-st.done:
			return nil, st.ended()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	st.sendMu.Lock()
	err := st.s.Send(&caspaxospb.LeaseKeepAliveRequest{Id: id})
	st.sendMu.Unlock()
	if err != nil {
		st.forget(id, w)
		st.cancel() // a failed send means the stream is broken: recv ends it
		<-st.done
		return nil, st.ended()
	}
	select {
	case r := <-w.ch:
		return r, nil
	case <-st.done:
		return nil, st.ended()
	case <-ctx.Done():
		// The answer may still come: it goes to w.ch, which nobody
		// reads; a later renewal of id waits for it first.
		return nil, ctx.Err()
	}
}

func (st *keepAliveStream) forget(id uint64, w *keepAliveWaiter) {
	st.mu.Lock()
	if st.wait[id] == w {
		delete(st.wait, id)
	}
	st.mu.Unlock()
}

func (st *keepAliveStream) ended() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// renewStreamed renews lease id over an endpoint's keep-alive stream,
// trying the endpoints in turn as call does; against a node without the
// stream it renews with the unary call.
func (c *Client) renewStreamed(ctx context.Context, id uint64) (Lease, error) {
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	var last error
	for _, idx := range c.order(start, -1) {
		if !c.ready(ctx, c.conns[idx]) {
			last = fmt.Errorf("endpoint %s not connected", c.cfg.Endpoints[idx])
			continue
		}
		st, err := c.keepAlives[idx].stream(c, idx)
		if errors.Is(err, errNoKeepAliveStream) {
			return c.KeepAliveOnce(ctx, id)
		}
		var r *caspaxospb.LeaseKeepAliveResponse
		if err == nil {
			r, err = st.renew(ctx, id)
		}
		switch {
		case err == nil && r.GetError() != nil:
			c.remember(idx)
			return Lease{}, fromInfo(r.GetError(), r.GetMessage())
		case err == nil:
			c.remember(idx)
			return leaseOf(r.GetLease()), nil
		case errors.Is(err, errNoKeepAliveStream):
			return c.KeepAliveOnce(ctx, id)
		case ctx.Err() != nil:
			c.suspect(idx)
			return Lease{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if typed, answered := fromStatus(err); answered && (errors.Is(typed, ErrUnauthenticated) || errors.Is(typed, ErrPermissionDenied)) {
			return Lease{}, typed // the node refused the stream itself
		}
		last = err
	}
	return Lease{}, fmt.Errorf("%w: %v", ErrUnavailable, last)
}
