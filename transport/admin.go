package transport

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/caspaxos/caspaxos/protocol"
)

// peerSet is everything the transport keeps per peer. SetPeers replaces it
// whole (copy on write), so readers take one snapshot with set() and never
// lock; a peer's entries are in every map or in none.
type peerSet struct {
	addrs   map[protocol.NodeID]string
	links   map[protocol.NodeID]*link
	heard   map[protocol.NodeID]*atomic.Int64 // when the last frame from each peer came: see markHeard
	gone    map[protocol.NodeID]*atomic.Bool  // peers whose last frame said they are leaving
	acked   map[protocol.NodeID]func()        // closes ackedCh: the peer saw us leave
	ackedCh map[protocol.NodeID]chan struct{}
}

func (t *Transport) set() *peerSet { return t.ps.Load() }

// isGone reports whether peer id said it is leaving (false for no peer).
func (ps *peerSet) isGone(id protocol.NodeID) bool {
	g := ps.gone[id]
	return g != nil && g.Load()
}

// SetPeers makes peers (ID to peer address, this node excluded) the
// transport's peers, at runtime (membership change, PROTOCOL.md §8): links
// to new peers start connecting, links to peers no longer listed close
// (what waited for them is dropped), and frames from them are refused. A
// peer whose address changed gets a new link.
func (t *Transport) SetPeers(peers map[protocol.NodeID]string) error {
	for id, addr := range peers {
		if id == 0 || id == t.cfg.Self || addr == "" {
			return fmt.Errorf("caspaxos/transport: bad peer %d at %q", id, addr)
		}
	}
	t.psMu.Lock()
	defer t.psMu.Unlock()
	if t.ctx.Err() != nil {
		return ErrClosed
	}
	cur := t.set()
	next := &peerSet{addrs: maps.Clone(peers), links: map[protocol.NodeID]*link{}, heard: map[protocol.NodeID]*atomic.Int64{},
		gone: map[protocol.NodeID]*atomic.Bool{}, acked: map[protocol.NodeID]func(){}, ackedCh: map[protocol.NodeID]chan struct{}{}}
	var closing []*link
	for id, l := range cur.links {
		if peers[id] == cur.addrs[id] {
			next.links[id], next.heard[id], next.gone[id] = l, cur.heard[id], cur.gone[id]
			next.acked[id], next.ackedCh[id] = cur.acked[id], cur.ackedCh[id]
		} else {
			closing = append(closing, l)
		}
	}
	var started []*link
	for id, addr := range peers {
		if next.links[id] != nil {
			continue
		}
		creds := insecure.NewCredentials()
		if t.cfg.TLS != nil {
			var err error
			if creds, err = t.grpcCredentials(id); err != nil {
				return err
			}
		}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(creds),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepalivePingIdle, Timeout: keepalivePingTimeout, PermitWithoutStream: true}),
			grpc.WithConnectParams(t.connectParams()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(t.cfg.MaxRecvFrameBytes)))
		if err != nil {
			for _, l := range started {
				l.conn.Close()
			}
			return fmt.Errorf("caspaxos/transport: peer %d at %q: %w", id, addr, err)
		}
		l := newLink(t, id, addr, conn)
		started = append(started, l)
		next.links[id], next.heard[id], next.gone[id] = l, new(atomic.Int64), new(atomic.Bool)
		ch := make(chan struct{})
		next.ackedCh[id], next.acked[id] = ch, sync.OnceFunc(func() { close(ch) })
	}
	t.ps.Store(next)
	for _, l := range started {
		t.wg.Add(1)
		go l.run()
	}
	for _, l := range closing {
		l.close()
		go l.conn.Close() // its goroutines end on quit; the stream ends with the connection
	}
	return nil
}

// The keepalive of the peers' gRPC connections (the GC and admin
// services; the links have their own heartbeat): a connection silent for
// keepalivePingIdle is pinged and closed if no answer comes within
// keepalivePingTimeout. The serving side lets peers ping every
// keepaliveMinPingInterval or more, which keepalivePingIdle must not be
// below (gRPC cuts off a client that pings more often).
const (
	keepalivePingIdle        = 10 * time.Second
	keepalivePingTimeout     = 5 * time.Second
	keepaliveMinPingInterval = 5 * time.Second
)

// keepalivePingIdle is at least keepaliveMinPingInterval: the compiler
// refuses a negative constant converted to uint64.
const _ = uint64(keepalivePingIdle - keepaliveMinPingInterval)

// dialTimeout is how long one attempt to connect to a peer may take.
const dialTimeout = 2 * time.Second

// connectParams makes gRPC's reconnect backoff that of the links. gRPC
// keeps its own per connection (by default 1s after a refused dial, growing
// to 120s), and until it runs out every stream a link opens fails at once:
// a peer that started after this node, or came back after being down a
// while, stayed unreachable for seconds to minutes after it listened again.
func (t *Transport) connectParams() grpc.ConnectParams {
	return grpc.ConnectParams{MinConnectTimeout: dialTimeout,
		Backoff: backoff.Config{BaseDelay: t.cfg.ReconnectMin, Multiplier: 2, Jitter: 0.2, MaxDelay: t.cfg.ReconnectMax}}
}
