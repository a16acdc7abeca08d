package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/kv"
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
func messageBytes(m protocol.Message) int {
	return len(m.Key) + len(m.State.Value) + len(m.State.Requests) + 128
}
func forwardBytes(f *peerpb.Forward) int {
	return len(f.GetKey()) + len(f.GetValue()) + len(f.GetRequestId()) + 64
}
func replyBytes(r *peerpb.ForwardReply) int {
	return len(r.GetValue()) + len(r.GetErrorMessage()) + len(r.GetRequests()) + 64
}

// link is the sending half of this node's connection to one peer: a queue
// and a goroutine that keeps a connection open and drains the queue into
// it, one frame per pass, whatever has accumulated since the last.
type link struct {
	t    *Transport
	id   protocol.NodeID
	addr string
	conn *grpc.ClientConn
	up   atomic.Bool // a connection is open
	mu   sync.Mutex
	buf  frameBuf
	// queued counts the items ever queued, done those written or dropped
	// (both under mu): everything queued before a moment has left once
	// done reaches queued as it was then (see Transport.Quiesce).
	queued, done uint64
	wake         chan struct{}
	quit         chan struct{}
	close        func()
	// firstUp is closed when the link first comes up; until then the peer
	// may simply not have started yet (see Transport.Forward).
	firstUp   chan struct{}
	markFirst func()
	// rtt holds the round-trip times of the latest probes (see probe).
	rtt rttWindow
	// ping is the probe to put in the next frame (0: none; under mu), pongs
	// carries the peer's answers to probes from listen to probe.
	ping  uint64
	pongs chan uint64
	// unanswered tells pump that a probe went unanswered: it drops the
	// connection and dials again.
	unanswered chan struct{}
}

func newLink(t *Transport, id protocol.NodeID, addr string, conn *grpc.ClientConn) *link {
	l := &link{t: t, id: id, addr: addr, conn: conn, wake: make(chan struct{}, 1), quit: make(chan struct{}), pongs: make(chan uint64, 1),
		unanswered: make(chan struct{}, 1)}
	l.close = sync.OnceFunc(func() { close(l.quit) })
	l.firstUp = make(chan struct{})
	l.markFirst = sync.OnceFunc(func() { close(l.firstUp) })
	return l
}

// enqueue adds n items of size bytes through fill, unless the link is
// down or full.
func (l *link) enqueue(fill func(*frameBuf), n, size int) error {
	if !l.up.Load() || l.t.ctx.Err() != nil {
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: link to node %d (%s) is down", ErrUnreachable, l.id, l.addr)
	}
	l.mu.Lock()
	if l.buf.len()+n > l.t.cfg.QueueItems || (l.buf.bytes > 0 && l.buf.bytes+size > l.t.cfg.QueueBytes) {
		l.mu.Unlock()
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: queue to node %d is full", ErrUnreachable, l.id)
	}
	fill(&l.buf)
	l.buf.bytes += size
	l.queued += uint64(n)
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

// take removes one frame's worth from the queue: up to FrameItems items and
// FrameBytes bytes (at least one item, however large), replies first.
func (l *link) take() *peerpb.Frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &peerpb.Frame{From: uint64(l.t.cfg.Self), Leaving: l.t.leaving.Load(), AcksLeaving: l.t.set().isGone(l.id), Ping: l.ping}
	l.ping = 0
	b := budget{items: l.t.cfg.FrameItems, bytes: l.t.cfg.FrameBytes}
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

// more reports whether anything still waits to be sent, once items of the
// frame taken before have been written or dropped.
func (l *link) more(items int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done += uint64(items)
	return l.buf.len() > 0
}

// mark returns the count of items queued so far.
func (l *link) mark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// left reports whether every item queued before mark returned m has been
// written, or dropped with a connection that broke.
func (l *link) left(m uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done >= m
}

// run keeps a connection to the peer open, reconnecting with jittered
// backoff.
func (l *link) run() {
	defer l.t.wg.Done()
	l.t.wg.Add(1)
	go l.probe()
	delay := l.t.cfg.ReconnectMin
	for {
		conn, err := l.dial()
		if err == nil {
			l.up.Store(true)
			l.markFirst()
			delay = l.t.cfg.ReconnectMin
			err = l.pump(conn)
			l.up.Store(false)
			conn.Close()
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

// dial connects to the peer and exchanges the framing's preface
// (frames.go): the link is up only once the peer answered it.
func (l *link) dial() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.t.ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	if t := l.t; t.cfg.TLS != nil {
		cfg, err := t.clientTLS(l.id)
		if err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("caspaxos/transport: TLS to node %d at %s: %w", l.id, l.addr, err)
		}
		conn = tc
	}
	// Close ends a dial that waits for the answer.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	_, err = conn.Write(framePreface)
	head := make([]byte, len(framePreface))
	if err == nil {
		_, err = io.ReadFull(conn, head)
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err == nil && !bytes.Equal(head, framePreface) {
		err = fmt.Errorf("caspaxos/transport: node %d at %s answered with preface %q, want %q", l.id, l.addr, head, framePreface)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// pump sends frames until the connection fails or the link is closed. An
// idle link sends an empty frame every Heartbeat, so the peer can tell it is
// alive. Only pump writes to conn; listen reads from it.
func (l *link) pump(conn net.Conn) error {
	select {
	case <-l.unanswered: // about the connection before this one
	default:
	}
	// A hello first: the receiver reads a connection's first frame with a
	// small bound until it knows the sender (frames.go), so it carries no
	// items.
	hello, err := appendFrame(nil, &peerpb.Frame{From: uint64(l.t.cfg.Self), Leaving: l.t.leaving.Load()}, helloFrameBytes)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("sending the hello to node %d: %w", l.id, err)
	}
	broken := make(chan error, 1)
	go l.listen(conn, broken)
	heartbeat := time.NewTicker(l.t.cfg.Heartbeat)
	defer heartbeat.Stop()
	var buf []byte
	for {
		select {
		case <-l.quit:
			return ErrClosed
		case err := <-broken:
			return fmt.Errorf("connection to node %d ended: %w", l.id, err)
		case <-l.unanswered:
			return fmt.Errorf("node %d did not answer a probe within %v", l.id, probeTimeout)
		case <-l.wake:
		case <-heartbeat.C:
		}
		// Let the goroutines that are ready to run (acceptor workers, the
		// proposer, readers of other links) queue what they are about to
		// send before this pass takes the queue: under load a frame then
		// carries about three items instead of under two, and a frame
		// costs a write here and a read at the peer whatever it holds.
		// Idle, nothing else is runnable and this returns at once.
		runtime.Gosched()
		for {
			if l.t.ctx.Err() != nil {
				// Closing: nothing more leaves, not even what was queued.
				return ErrClosed
			}
			f := l.take()
			var err error
			items := len(f.Messages) + len(f.Forwards) + len(f.ForwardReplies)
			if buf, err = appendFrame(buf[:0], f, l.t.cfg.MaxRecvFrameBytes); err != nil {
				// Only an item over the receiver's bound gets here: drop
				// the frame, keep the link.
				l.t.dropped.Add(uint64(items))
				l.notSent(f.Forwards)
				l.t.cfg.Logger.Error("frame not sent", "peer", uint64(l.id), "err", err)
				if !l.more(items) {
					break
				}
				continue
			}
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := conn.Write(buf); err != nil {
				// A write that failed wrote part of the frame at most, and
				// the receiver drops a frame cut short: its forwards were
				// not run, and may run elsewhere.
				l.notSent(f.Forwards)
				return fmt.Errorf("sending to node %d: %w", l.id, err)
			}
			l.t.frames.Add(1)
			l.t.items.Add(uint64(items))
			if cap(buf) > 1<<20 {
				buf = nil // keep no large frame's buffer
			}
			if !l.more(items) {
				break
			}
		}
	}
}

// listen reads what the peer sends back on the link's connection: answers
// to probes, frames of no items (bounded by helloFrameBytes). It reports
// why the connection ended on broken.
func (l *link) listen(conn net.Conn, broken chan<- error) {
	r := bufio.NewReader(conn)
	var body []byte
	for {
		f := &peerpb.Frame{}
		var err error
		if body, err = readFrame(r, body, f, helloFrameBytes); err != nil {
			broken <- err
			return
		}
		if p := f.GetPong(); p != 0 {
			select {
			case l.pongs <- p:
			default: // nobody waits for it any more
			}
		}
	}
}

// discard drops what waited for a connection that broke; forwards among it
// never left, so their callers may run them elsewhere.
func (l *link) discard() {
	l.mu.Lock()
	forwards := make([]*peerpb.Forward, len(l.buf.forwards))
	for i, f := range l.buf.forwards {
		forwards[i] = f.v
	}
	l.buf = frameBuf{}
	l.done = l.queued // dropped, or cut short by the broken connection
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
	probeTimeout = kv.FailedRTT
	rttSettle    = 4
)

// probe measures the round-trip time to the peer every probeEvery
// heartbeats while the link is up: a ping in the link's next frame, which
// the peer answers on the same connection, so it crosses what the link's
// frames cross (queueing behind them included; rttWindow keeps the
// smallest). A probe unanswered within probeTimeout, or a link that went
// down or silent (DeadAfter) after it was up, marks the peer as failed (see
// rttWindow); an unanswered probe also drops the connection.
func (l *link) probe() {
	defer l.t.wg.Done()
	tick := time.NewTicker(probeEvery * l.t.cfg.Heartbeat)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-l.quit:
			return
		case <-tick.C:
		}
		if !l.up.Load() {
			select {
			case <-l.firstUp:
				l.rtt.fail()
			default: // not up yet: nothing was measured, nothing failed
			}
			continue
		}
		// A silent peer (its frames to us stopped) counts as failed, but
		// this link's connection is probed all the same: it may work
		// while the peer's link to us does not, or be half-open.
		silent := l.t.silent(l.id)
		if silent {
			l.rtt.fail()
		}
		seq++
		start := time.Now()
		l.mu.Lock()
		l.ping = seq
		l.mu.Unlock()
		l.poke()
		switch l.awaitPong(seq, probeTimeout) {
		case pongOK:
			if !silent {
				l.rtt.add(time.Since(start))
			}
		case pongLate:
			l.rtt.fail()
			// The connection may be half-open (the peer is gone without a
			// reset, or its path hangs): frames would go into it unseen
			// until the kernel gives up, minutes later. Start over.
			select {
			case l.unanswered <- struct{}{}:
			default:
			}
		case pongClosed:
			return
		}
	}
}

type pongOutcome int

const (
	pongOK pongOutcome = iota
	pongLate
	pongClosed
)

// awaitPong waits for the answer to probe seq; answers to earlier probes,
// which timed out, are skipped.
func (l *link) awaitPong(seq uint64, timeout time.Duration) pongOutcome {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-l.quit:
			return pongClosed
		case <-timer.C:
			return pongLate
		case p := <-l.pongs:
			if p == seq {
				return pongOK
			}
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
