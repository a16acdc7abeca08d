package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// frameBuf is what waits for one peer: items with their approximate wire
// sizes, so that frames and the queue are bounded in bytes too.
type frameBuf struct {
	messages []sized[*peerpb.Message]
	forwards []sized[*peerpb.Forward]
	replies  []sized[*peerpb.ForwardReply]
	bytes    int
}

type sized[T any] struct {
	v    T
	size int
}

func (f *frameBuf) len() int { return len(f.messages) + len(f.forwards) + len(f.replies) }

func (f *frameBuf) addMessage(m *peerpb.Message, size int) {
	f.messages = append(f.messages, sized[*peerpb.Message]{m, size})
}

func (f *frameBuf) addForward(m *peerpb.Forward) {
	f.forwards = append(f.forwards, sized[*peerpb.Forward]{m, forwardBytes(m)})
}

func (f *frameBuf) addReply(m *peerpb.ForwardReply) {
	f.replies = append(f.replies, sized[*peerpb.ForwardReply]{m, replyBytes(m)})
}

// Approximate wire sizes: the variable parts plus a bound on the fixed ones.
func messageBytes(m protocol.Message) int   { return len(m.Key) + len(m.State.Value) + 128 }
func forwardBytes(f *peerpb.Forward) int    { return len(f.GetKey()) + len(f.GetValue()) + 64 }
func replyBytes(r *peerpb.ForwardReply) int { return len(r.GetValue()) + len(r.GetErrorMessage()) + 64 }

// link is the sending half of this node's connection to one peer: a queue
// and a goroutine that keeps a stream open and drains the queue into it,
// one frame per pass, whatever has accumulated since the last.
type link struct {
	t     *Transport
	id    protocol.NodeID
	addr  string
	conn  *grpc.ClientConn
	up    atomic.Bool // a stream is open
	mu    sync.Mutex
	buf   frameBuf
	wake  chan struct{}
	quit  chan struct{}
	close func()
	// firstUp is closed when the link first comes up; until then the peer
	// may simply not have started yet (see Transport.Forward).
	firstUp   chan struct{}
	markFirst func()
	// rtt holds the round-trip times of the latest probes (see probe).
	rtt rttWindow
}

func newLink(t *Transport, id protocol.NodeID, addr string, conn *grpc.ClientConn) *link {
	l := &link{t: t, id: id, addr: addr, conn: conn, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	l.close = sync.OnceFunc(func() { close(l.quit) })
	l.firstUp = make(chan struct{})
	l.markFirst = sync.OnceFunc(func() { close(l.firstUp) })
	return l
}

// enqueue adds n items of size bytes through fill, unless the link is
// down or full.
func (l *link) enqueue(fill func(*frameBuf), n, size int) error {
	if !l.up.Load() {
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: link to node %d (%s) is down", ErrUnreachable, l.id, l.addr)
	}
	l.mu.Lock()
	if l.buf.len()+n > l.t.cfg.QueueLimit || (l.buf.bytes > 0 && l.buf.bytes+size > l.t.cfg.QueueBytes) {
		l.mu.Unlock()
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: queue to node %d is full", ErrUnreachable, l.id)
	}
	fill(&l.buf)
	l.buf.bytes += size
	l.mu.Unlock()
	l.poke()
	return nil
}

// poke wakes the sending goroutine.
func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take removes one frame's worth from the queue: up to FrameLimit items and
// FrameBytes bytes (at least one item, however large), replies first.
func (l *link) take() *peerpb.Frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &peerpb.Frame{From: uint64(l.t.cfg.Self), Leaving: l.t.leaving.Load(), AcksLeaving: l.t.set().isGone(l.id)}
	b := budget{items: l.t.cfg.FrameLimit, bytes: l.t.cfg.FrameBytes}
	f.ForwardReplies, l.buf.replies = takeSized(l.buf.replies, &b)
	f.Forwards, l.buf.forwards = takeSized(l.buf.forwards, &b)
	f.Messages, l.buf.messages = takeSized(l.buf.messages, &b)
	l.buf.bytes -= b.taken
	return f
}

type budget struct{ items, bytes, taken, count int }

func takeSized[T any](q []sized[T], b *budget) (head []T, rest []sized[T]) {
	n := 0
	for n < len(q) && b.count < b.items && (b.count == 0 || b.taken+q[n].size <= b.bytes) {
		b.taken += q[n].size
		b.count++
		n++
	}
	if n == 0 {
		return nil, q
	}
	head = make([]T, n)
	for i := range head {
		head[i] = q[i].v
	}
	if n == len(q) {
		return head, nil
	}
	return head, q[n:]
}

// more reports whether anything still waits to be sent.
func (l *link) more() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.len() > 0
}

// run keeps a stream to the peer open, reconnecting with jittered backoff.
func (l *link) run() {
	defer l.t.wg.Done()
	l.t.wg.Add(1)
	go l.probe()
	delay := l.t.cfg.ReconnectMin
	for {
		stream, err := peerpb.NewPeerClient(l.conn).Stream(l.t.ctx)
		if err == nil {
			l.up.Store(true)
			l.markFirst()
			delay = l.t.cfg.ReconnectMin
			err = l.pump(stream)
			l.up.Store(false)
			l.discard()
		}
		select {
		case <-l.quit:
			return
		default:
		}
		l.t.linkFailures.Add(1)
		l.t.cfg.Logger.Debug("peer link down", "peer", uint64(l.id), "addr", l.addr, "err", err)
		wait := delay/2 + rand.N(delay/2+1)
		select {
		case <-l.quit:
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, l.t.cfg.ReconnectMax)
	}
}

// pump sends frames until the stream fails or the link is closed. An idle
// link sends an empty frame every Heartbeat, so the peer can tell it is alive.
func (l *link) pump(stream peerpb.Peer_StreamClient) error {
	heartbeat := time.NewTicker(l.t.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-l.quit:
			_, _ = stream.CloseAndRecv()
			return ErrClosed
		case <-stream.Context().Done():
			return fmt.Errorf("stream to node %d ended: %w", l.id, stream.Context().Err())
		case <-l.wake:
		case <-heartbeat.C:
		}
		for {
			f := l.take()
			if err := stream.Send(f); err != nil {
				// SendMsg fails only when the stream was already broken:
				// this frame never reached the connection, so its forwards
				// were not sent and may run elsewhere.
				l.notSent(f.Forwards)
				_, err = stream.CloseAndRecv()
				return fmt.Errorf("sending to node %d: %w", l.id, err)
			}
			if !l.more() {
				break
			}
		}
	}
}

// discard drops what waited for a stream that broke; forwards among it
// never left, so their callers may run them elsewhere.
func (l *link) discard() {
	l.mu.Lock()
	forwards := make([]*peerpb.Forward, len(l.buf.forwards))
	for i, f := range l.buf.forwards {
		forwards[i] = f.v
	}
	l.buf = frameBuf{}
	l.mu.Unlock()
	l.notSent(forwards)
}

func (l *link) notSent(forwards []*peerpb.Forward) {
	for _, f := range forwards {
		l.t.resolve(l.id, &peerpb.ForwardReply{Id: f.GetId(), ErrorCode: codeNotSent})
	}
}

// rttSamples is how many probes RTT looks back over, probeEvery (in
// heartbeats) how often a link probes, probeTimeout how long one probe may
// take before it counts as failed, and rttSettle how many probes in a row
// a peer must answer after a failure before its RTT is measured again.
const (
	rttSamples   = 16
	probeEvery   = 4
	probeTimeout = 2 * time.Second
	rttSettle    = 4
)

// FailedRTT is what RTT reports for a peer that failed and is settling
// (probeTimeout). server.FailedRTT states the same to routing and timeouts;
// a daemon test keeps the two equal.
const FailedRTT = probeTimeout

// probe measures the round-trip time to the peer every probeEvery
// heartbeats while the link is up: a gRPC health check on the link's own
// connection, so it crosses what the link's frames cross. The peer need not
// serve the health service: an Unimplemented answer came back from the peer
// all the same. A probe that fails or times out, or a link that went down
// or silent (DeadAfter) after it was up, marks the peer as failed (see
// rttWindow).
func (l *link) probe() {
	defer l.t.wg.Done()
	hc := healthpb.NewHealthClient(l.conn)
	tick := time.NewTicker(probeEvery * l.t.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-tick.C:
		}
		if !l.up.Load() || l.t.silent(l.id) {
			select {
			case <-l.firstUp:
				l.rtt.fail()
			default: // not up yet: nothing was measured, nothing failed
			}
			continue
		}
		ctx, cancel := context.WithTimeout(l.t.ctx, probeTimeout)
		start := time.Now()
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		took := time.Since(start)
		cancel()
		switch status.Code(err) {
		case codes.OK, codes.Unimplemented, codes.NotFound:
			l.rtt.add(took)
		case codes.Canceled:
			// The transport is closing.
		default:
			l.rtt.fail()
		}
	}
}

// rttWindow keeps the last rttSamples round-trip times. After a failure
// (a probe that got no answer, a link that broke) it forgets them and
// reports the peer as probeTimeout away until rttSettle probes in a row
// were answered: a peer that comes back from a partition first works off
// what piled up for it, and requests sent to it meanwhile would wait.
type rttWindow struct {
	mu      sync.Mutex
	samples [rttSamples]time.Duration
	n, next int
	failed  bool // since the last failure, fewer than rttSettle answers
	settled int  // answers since the last failure
}

func (w *rttWindow) add(d time.Duration) {
	w.mu.Lock()
	w.samples[w.next] = d
	w.next = (w.next + 1) % rttSamples
	w.n = min(w.n+1, rttSamples)
	if w.failed {
		w.settled++
		w.failed = w.settled < rttSettle
	}
	w.mu.Unlock()
}

func (w *rttWindow) fail() {
	w.mu.Lock()
	w.n, w.next, w.failed, w.settled = 0, 0, true, 0
	w.mu.Unlock()
}

// min returns the smallest sample (probeTimeout while settling after a
// failure), false if nothing was measured yet.
func (w *rttWindow) min() (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return probeTimeout, true
	}
	if w.n == 0 {
		return 0, false
	}
	m := w.samples[0]
	for _, d := range w.samples[1:w.n] {
		m = min(m, d)
	}
	return m, true
}

// RTT returns the smallest round-trip time to node id over its link's last
// probes (about the last 16 × 4 heartbeats: the path's own latency, with
// queueing and scheduling delays filtered out), or false when nothing was
// measured yet (the link never came up, or id is no peer). A peer whose
// probe failed (or whose link broke) is 2s away until it answered 4 probes
// in a row again. Routing uses it to tell near peers from far ones.
func (t *Transport) RTT(id protocol.NodeID) (time.Duration, bool) {
	l := t.set().links[id]
	if l == nil {
		return 0, false
	}
	return l.rtt.min()
}
