package transport

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// frameBuf is what waits for one peer.
type frameBuf struct {
	messages []*peerpb.Message
	forwards []*peerpb.Forward
	replies  []*peerpb.ForwardReply
}

func (f *frameBuf) len() int { return len(f.messages) + len(f.forwards) + len(f.replies) }

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
}

func newLink(t *Transport, id protocol.NodeID, addr string, conn *grpc.ClientConn) *link {
	l := &link{t: t, id: id, addr: addr, conn: conn, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	l.close = sync.OnceFunc(func() { close(l.quit) })
	return l
}

// enqueue adds n items through fill, unless the link is down or full.
func (l *link) enqueue(fill func(*frameBuf), n int) error {
	if !l.up.Load() {
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: link to node %d (%s) is down", ErrUnreachable, l.id, l.addr)
	}
	l.mu.Lock()
	if l.buf.len()+n > l.t.cfg.QueueLimit {
		l.mu.Unlock()
		l.t.dropped.Add(uint64(n))
		return fmt.Errorf("%w: queue to node %d is full", ErrUnreachable, l.id)
	}
	fill(&l.buf)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// take removes up to FrameLimit items from the queue as one frame.
func (l *link) take() *peerpb.Frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &peerpb.Frame{From: uint64(l.t.cfg.Self)}
	room := l.t.cfg.FrameLimit
	f.ForwardReplies, l.buf.replies, room = split(l.buf.replies, room)
	f.Forwards, l.buf.forwards, room = split(l.buf.forwards, room)
	f.Messages, l.buf.messages, _ = split(l.buf.messages, room)
	return f
}

func split[T any](q []T, room int) (head, rest []T, left int) {
	n := min(len(q), room)
	if n == len(q) {
		return q, nil, room - n
	}
	return q[:n:n], q[n:], 0
}

// run keeps a stream to the peer open, reconnecting with jittered backoff.
func (l *link) run() {
	defer l.t.wg.Done()
	delay := l.t.cfg.ReconnectMin
	for {
		stream, err := peerpb.NewPeerClient(l.conn).Stream(l.t.ctx)
		if err == nil {
			l.up.Store(true)
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
			if len(f.Messages)+len(f.Forwards)+len(f.ForwardReplies) < l.t.cfg.FrameLimit {
				break
			}
		}
	}
}

// discard drops what waited for a stream that broke; forwards among it
// never left, so their callers may run them elsewhere.
func (l *link) discard() {
	l.mu.Lock()
	forwards := l.buf.forwards
	l.buf = frameBuf{}
	l.mu.Unlock()
	l.notSent(forwards)
}

func (l *link) notSent(forwards []*peerpb.Forward) {
	for _, f := range forwards {
		l.t.resolve(&peerpb.ForwardReply{Id: f.GetId(), ErrorCode: codeNotSent})
	}
}
