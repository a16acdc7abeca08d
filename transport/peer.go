package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/internal/connsplit"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Errors of the transport; match with errors.Is.
var (
	// ErrUnreachable: the peer's link is down; what was to be sent was not.
	ErrUnreachable = errors.New("caspaxos/transport: peer unreachable")
	// ErrClosed: the transport was closed.
	ErrClosed = errors.New("caspaxos/transport: closed")
	// ErrNotTaken: a Handler's Serve returns an error wrapping it when it
	// did not run the operation at all (it is stopping, or overloaded); the
	// caller is told the forward was not taken and may run it elsewhere.
	ErrNotTaken = errors.New("caspaxos/transport: operation not taken")
)

// Handler is the node a Transport delivers to.
type Handler interface {
	// Deliver takes protocol messages addressed to this node. It must not
	// block on their processing.
	Deliver(msgs []protocol.Message)
	// Serve runs an operation forwarded by a peer on this node's proposer.
	Serve(ctx context.Context, op kv.Op) (protocol.State, error)
}

// Config configures a Transport.
type Config struct {
	// Self is this node's ID.
	Self protocol.NodeID
	// Peers maps every other member's ID to its peer address (host:port).
	Peers map[protocol.NodeID]string
	// QueueItems and QueueBytes bound what waits for one peer (messages,
	// forwards and replies together; defaults 65536 items, 256 MiB). Past
	// them, what is sent is dropped (the protocol tolerates loss) so that a
	// slow peer never blocks the others.
	QueueItems int
	QueueBytes int
	// FrameItems and FrameBytes bound one frame (defaults 4096 items,
	// 16 MiB; a single larger item still goes alone).
	FrameItems int
	FrameBytes int
	// MaxRecvFrameBytes bounds a frame this node reads from a member
	// (default 64 MiB; at least twice FrameBytes), and one it sends: every
	// node of a cluster should use the same. A connection's first frame,
	// read before its sender is known to be a member, is bounded by a
	// small fixed size instead (helloFrameBytes): an unknown connection
	// cannot make this node allocate more.
	MaxRecvFrameBytes int
	// MaxConnsPerPeer bounds the connections a member may hold open to this
	// node's peer port (default 4); past it, its oldest is closed (a link
	// that reconnects replaces a connection not yet seen to be dead).
	// MaxUnidentifiedConns bounds the connections whose sender has not yet
	// identified itself as a member with its first frame (default 16);
	// past it, new connections are closed at once. With TLS, it bounds the
	// handshakes under way as well, apart.
	MaxConnsPerPeer      int
	MaxUnidentifiedConns int
	// MaxForwardTimeout bounds how long a forwarded operation may run here
	// (default 1m): a forward asking for longer, or for no deadline, gets
	// this one.
	MaxForwardTimeout time.Duration
	// Limits are the node's key and value limits (default kv.DefaultLimits):
	// a peer's message, forward or reply carrying a larger key or value is
	// bad input, and its connection is dropped. Every node of a cluster
	// should use the same.
	Limits kv.Limits
	// MaxServing bounds the forwarded operations this node runs at once
	// (default 4096); past it, forwards are refused as not taken, and their
	// callers run them themselves.
	MaxServing int
	// Heartbeat is how often a link sends a frame when it has nothing else
	// to send (default 50ms). A peer not heard from for DeadAfter (default
	// 300ms) counts as unreachable: forwards to it stop and fail over.
	// (gRPC's own keepalive cannot probe faster than every 10s.)
	Heartbeat time.Duration
	DeadAfter time.Duration
	// StartupGrace is how long a forward waits for a peer this node has
	// never reached (default 2s): at start-up, peers come up at different
	// times, and proposing their keys here meanwhile only makes proposers
	// compete.
	StartupGrace time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// bring a link up (defaults 50ms, 250ms); gRPC's own reconnect backoff
	// to the peer follows them too. The cap is how late a link may come
	// back after a partition heals: with 1s, the isolated node's clients
	// waited up to 1.1s after the heal (bench isolation); a failed dial
	// every 250ms costs nothing worth saving.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// TLS, if set, makes the peer port, the links and the peer gRPC
	// connections speak mutual TLS only, with this node's peer certificate,
	// verified against its CA file (required), and checks that every peer
	// is a member (tls.go). Nil: plain TCP, every peer unauthenticated.
	TLS    *certs.Source
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of every tunable field (Self, Peers
// and Logger are the caller's). A zero or negative field of a Config given
// to New takes its value from here.
func DefaultConfig() Config {
	return Config{
		QueueItems:           1 << 16,
		QueueBytes:           256 << 20,
		FrameItems:           4096,
		FrameBytes:           16 << 20,
		MaxRecvFrameBytes:    64 << 20,
		MaxConnsPerPeer:      4,
		MaxUnidentifiedConns: 16,
		MaxForwardTimeout:    time.Minute,
		Limits:               kv.DefaultLimits,
		MaxServing:           4096,
		Heartbeat:            50 * time.Millisecond,
		DeadAfter:            300 * time.Millisecond,
		StartupGrace:         2 * time.Second,
		ReconnectMin:         50 * time.Millisecond,
		ReconnectMax:         250 * time.Millisecond,
	}
}

func (c *Config) validate() error {
	if c.Self == 0 {
		return errors.New("caspaxos/transport: Self must not be 0")
	}
	for id, addr := range c.Peers {
		if id == 0 || id == c.Self || addr == "" {
			return fmt.Errorf("caspaxos/transport: bad peer %d at %q", id, addr)
		}
	}
	def := DefaultConfig()
	setDefault(&c.QueueItems, def.QueueItems)
	setDefault(&c.QueueBytes, def.QueueBytes)
	setDefault(&c.FrameItems, def.FrameItems)
	setDefault(&c.FrameBytes, def.FrameBytes)
	setDefault(&c.MaxRecvFrameBytes, def.MaxRecvFrameBytes)
	if c.FrameBytes > c.MaxRecvFrameBytes/2 {
		return fmt.Errorf("caspaxos/transport: FrameBytes %d is over %d, half of MaxRecvFrameBytes", c.FrameBytes, c.MaxRecvFrameBytes/2)
	}
	if c.MaxRecvFrameBytes > math.MaxUint32 {
		return fmt.Errorf("caspaxos/transport: MaxRecvFrameBytes %d does not fit a frame's 4-byte length", c.MaxRecvFrameBytes)
	}
	setDefault(&c.MaxConnsPerPeer, def.MaxConnsPerPeer)
	setDefault(&c.MaxUnidentifiedConns, def.MaxUnidentifiedConns)
	setDefault(&c.MaxForwardTimeout, def.MaxForwardTimeout)
	if c.Limits == (kv.Limits{}) {
		c.Limits = def.Limits
	}
	if c.Limits.MaxKeyBytes <= 0 || c.Limits.MaxValueBytes < 0 {
		return fmt.Errorf("caspaxos/transport: limits %+v: MaxKeyBytes must be positive and MaxValueBytes not negative", c.Limits)
	}
	setDefault(&c.MaxServing, def.MaxServing)
	setDefault(&c.Heartbeat, def.Heartbeat)
	setDefault(&c.DeadAfter, def.DeadAfter)
	if c.DeadAfter < 2*c.Heartbeat {
		return fmt.Errorf("caspaxos/transport: DeadAfter %v must be at least twice Heartbeat %v", c.DeadAfter, c.Heartbeat)
	}
	setDefault(&c.StartupGrace, def.StartupGrace)
	setDefault(&c.ReconnectMin, def.ReconnectMin)
	setDefault(&c.ReconnectMax, def.ReconnectMax)
	if c.TLS != nil && c.TLS.Files().CAFile == "" {
		return errors.New("caspaxos/transport: peer TLS needs a trusted CA file")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Transport links this node with its peers: one long-lived TCP connection
// to each peer carries frames that hold everything waiting for that peer
// (protocol messages of many keys, forwarded operations, replies to
// forwards), so ops/s is not bounded by RPCs/s. Frames from peers arrive on
// the peer port, which Serve shares with gRPC (frames.go). A gRPC client
// connection to each peer serves the GC service.
type Transport struct {
	cfg          Config
	h            Handler
	ps           atomic.Pointer[peerSet] // replaced whole by SetPeers (admin.go)
	psMu         sync.Mutex              // serializes SetPeers and Close
	nextID       atomic.Uint64
	mu           sync.Mutex
	pending      map[uint64]pendingForward
	serving      chan struct{} // a slot per forwarded operation running here
	leaving      atomic.Bool   // set by Leave: every frame says so
	dropped      atomic.Uint64
	linkFailures atomic.Uint64
	refusedConns atomic.Uint64
	// refusedLoggedAt is when a refused handshake was last logged as a
	// warning (as markHeard stores it; 0: never), refusedUnlogged how many
	// were refused since, that one included (refusedHandshake).
	refusedLoggedAt atomic.Int64
	refusedUnlogged atomic.Int64
	frames          atomic.Uint64
	items           atomic.Uint64
	started         time.Time                      // from now: it carries a monotonic reading
	now             func() time.Time               // time.Now; tests step its wall clock
	connMu          sync.Mutex                     // guards conns, byPeer, unidentified and listeners, and orders cancel with track
	conns           map[net.Conn]protocol.NodeID   // accepted connections: the member each identified as, 0 if none yet
	byPeer          map[protocol.NodeID][]net.Conn // each member's identified connections, oldest first
	unidentified    int
	listeners       []*connsplit.Listener
	names           atomic.Pointer[map[protocol.NodeID]string] // the members' names, for TLS (tls.go)
	ctx             context.Context
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

// New starts links to every peer; they connect in the background.
func New(cfg Config, h Handler) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{cfg: cfg, h: h,
		pending: make(map[uint64]pendingForward), conns: make(map[net.Conn]protocol.NodeID), byPeer: make(map[protocol.NodeID][]net.Conn),
		serving: make(chan struct{}, cfg.MaxServing), ctx: ctx, cancel: cancel, now: time.Now}
	t.started = t.now()
	// Forward IDs start at a random point: a peer may still answer a
	// forward of this node's previous run, and its reply must not match a
	// forward of this run. (Replies are also matched by peer.)
	t.nextID.Store(rand.Uint64())
	t.ps.Store(&peerSet{})
	if err := t.SetPeers(cfg.Peers); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// ServerOptions are the gRPC server options the peer port's gRPC server
// needs (the one given to Serve): it accepts the keepalive probes of the
// peers' gRPC connections, and large GC batches; with TLS, it takes the
// connections' TLS state and refuses calls of non-members (tls.go).
func (t *Transport) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinPingInterval, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(t.cfg.MaxRecvFrameBytes),
	}
	if t.cfg.TLS != nil {
		opts = append(opts, t.tlsServerOptions()...)
	}
	return opts
}

// Close stops every link and fails the forwards waiting for replies.
func (t *Transport) Close() {
	t.connMu.Lock()
	t.cancel()
	t.connMu.Unlock()
	t.closeServing()
	t.psMu.Lock()
	defer t.psMu.Unlock()
	for _, l := range t.set().links {
		l.close()
	}
	t.wg.Wait()
	for _, l := range t.set().links {
		l.conn.Close()
	}
}

// Send queues msgs for node to. It returns ErrUnreachable (and drops them)
// when the link is down or its queue is full; nil means queued, not delivered.
func (t *Transport) Send(to protocol.NodeID, msgs []protocol.Message) error {
	l := t.set().links[to]
	if l == nil {
		return fmt.Errorf("%w: no link to node %d", ErrUnreachable, to)
	}
	size := 0
	for _, m := range msgs {
		size += messageBytes(m)
	}
	return l.enqueue(func(f *frameBuf) {
		wire := make([]peerpb.Message, len(msgs)) // one allocation for the lot
		for i, m := range msgs {
			toWire(&wire[i], m)
			f.addMessage(&wire[i], messageBytes(m))
		}
	}, len(msgs), size)
}

// Reachable reports whether node id can be sent to and was heard from
// within DeadAfter.
//
// A peer that announced it is leaving is not reachable either.
func (t *Transport) Reachable(id protocol.NodeID) bool {
	return !t.silent(id) && !t.set().isGone(id)
}

// silent reports whether node id's link is down or the node was not heard
// from within DeadAfter: a forward in flight to it will get no answer.
func (t *Transport) silent(id protocol.NodeID) bool {
	ps := t.set()
	l := ps.links[id]
	if l == nil || !l.up.Load() {
		return true
	}
	return t.quiet(ps.heard[id])
}

// markHeard records in heard that its peer was heard from just now: as
// the monotonic time since the transport started, plus 1 (0 is "never").
// A time of day (UnixNano) would have no monotonic reading, and a step of
// the system clock would make every peer look dead, or alive for minutes.
func (t *Transport) markHeard(heard *atomic.Int64) {
	heard.Store(int64(t.now().Sub(t.started)) + 1)
}

// quiet reports whether heard's peer was never heard from, or not within
// DeadAfter: monotonic time, like markHeard.
func (t *Transport) quiet(heard *atomic.Int64) bool {
	at := heard.Load()
	return at == 0 || t.now().Sub(t.started)-time.Duration(at-1) >= t.cfg.DeadAfter
}

// Leave tells every peer that this node is shutting down, so that they stop
// forwarding to it, and returns once every reachable peer acknowledged it
// (its forwards sent before came in earlier frames), or ctx is done. The
// node keeps answering the forwards it has; call Leave before stopping what
// serves them.
func (t *Transport) Leave(ctx context.Context) {
	t.leaving.Store(true)
	ps := t.set()
	for _, l := range ps.links {
		l.poke()
	}
	check := time.NewTicker(t.cfg.Heartbeat)
	defer check.Stop()
	for id := range ps.links {
		for !t.silent(id) {
			select {
			case <-ps.ackedCh[id]:
			case <-check.C:
				continue
			case <-ctx.Done():
				return
			}
			break
		}
	}
}

// quiescePollInterval is how often Quiesce looks again at what it waits
// for: the wait lies on a stopping node's path, so it is short.
const quiescePollInterval = time.Millisecond

// Quiesce returns once no forwarded operation is being served here and
// what was queued to peers until then (their answers among it) has been
// written, or when ctx is done. A node that stops calls it after Leave and
// before it stops what serves forwards and closes the transport: an
// operation a peer forwarded here before it learnt this node was leaving
// then gets its answer, not an unknown outcome.
func (t *Transport) Quiesce(ctx context.Context) {
	check := time.NewTicker(quiescePollInterval)
	defer check.Stop()
	wait := func(ok func() bool) bool {
		for !ok() {
			select {
			case <-check.C:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	if !wait(func() bool { return len(t.serving) == 0 }) {
		return
	}
	// A forward's answer is queued before its slot in serving is freed.
	for _, l := range t.set().links {
		m := l.mark()
		if !wait(func() bool { return !l.up.Load() || l.left(m) }) {
			return
		}
	}
}

// Stats counts the transport's work and trouble since it started.
type Stats struct {
	// Frames and Items count the frames written to peers and the messages,
	// forwards and replies in them (heartbeats are frames of no item).
	Frames, Items uint64
	// Dropped counts items not sent because their link was down or full.
	Dropped uint64
	// LinkFailures counts connections to peers that broke or could not open.
	LinkFailures uint64
	// RefusedConns counts connections to the peer port closed by
	// MaxUnidentifiedConns or MaxConnsPerPeer, or whose TLS handshake
	// failed.
	RefusedConns uint64
	// RTT is each peer's round-trip time as RTT reports it, for the peers
	// with one measured.
	RTT map[protocol.NodeID]time.Duration
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := Stats{Frames: t.frames.Load(), Items: t.items.Load(), Dropped: t.dropped.Load(), LinkFailures: t.linkFailures.Load(),
		RefusedConns: t.refusedConns.Load(), RTT: make(map[protocol.NodeID]time.Duration)}
	for id := range t.set().links {
		if d, ok := t.RTT(id); ok {
			s.RTT[id] = d
		}
	}
	return s
}
