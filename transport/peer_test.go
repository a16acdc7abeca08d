package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// node is a fake Handler: it records messages and answers forwards with the
// real change functions applied to an empty register; hold, if set, keeps
// every forward waiting until closed.
type node struct {
	mu     sync.Mutex
	got    []protocol.Message
	hold   chan struct{}
	seen   chan kv.Op
	served atomic.Int64
}

func (n *node) Deliver(msgs []protocol.Message) {
	n.mu.Lock()
	n.got = append(n.got, msgs...)
	n.mu.Unlock()
}

func (n *node) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

func (n *node) Serve(ctx context.Context, op kv.Op) (protocol.State, error) {
	n.served.Add(1)
	if n.seen != nil {
		n.seen <- op
	}
	if n.hold != nil {
		select {
		case <-n.hold:
		case <-ctx.Done():
			return protocol.State{}, ctx.Err()
		}
	}
	cur := protocol.State{Value: []byte("41"), Version: 3, Requests: servedTable}
	if op.Kind == kv.OpOutcome {
		return cur, nil
	}
	w, err := op.Change()(cur)
	if err != nil {
		return cur, err
	}
	return protocol.State{Value: w.Value, Version: 4, Requests: cur.Requests}, nil
}

// servedTable is the request table of the register a node's Serve answers
// from.
var servedTable = protocol.EncodeRequests(protocol.RequestTable{Records: []protocol.RequestRecord{{ID: "r", Outcome: protocol.RequestApplied, Version: 3, IssuedMillis: 1}}})

type cluster struct {
	tr      map[protocol.NodeID]*Transport
	nodes   map[protocol.NodeID]*node
	servers map[protocol.NodeID]*grpc.Server
	addrs   map[protocol.NodeID]string
}

// newCluster starts n transports on loopback, each with its own gRPC server
// (serving the health service) on its peer port.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return newClusterWith(t, n, nil)
}

// newClusterWith is newCluster with each node's Config changed by mod.
func newClusterWith(t *testing.T, n int, mod func(*Config)) *cluster {
	t.Helper()
	c := &cluster{tr: map[protocol.NodeID]*Transport{}, nodes: map[protocol.NodeID]*node{}, servers: map[protocol.NodeID]*grpc.Server{}}
	addrs := map[protocol.NodeID]string{}
	c.addrs = addrs
	lis := map[protocol.NodeID]net.Listener{}
	for id := protocol.NodeID(1); id <= protocol.NodeID(n); id++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[id], addrs[id] = l, l.Addr().String()
	}
	for id := range addrs {
		peers := map[protocol.NodeID]string{}
		for p, a := range addrs {
			if p != id {
				peers[p] = a
			}
		}
		c.nodes[id] = &node{}
		cfg := Config{Self: id, Peers: peers}
		if mod != nil {
			mod(&cfg)
		}
		tr, err := New(cfg, c.nodes[id])
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(tr.ServerOptions()...)
		healthpb.RegisterHealthServer(s, health.NewServer())
		tr.Serve(lis[id], s)
		c.tr[id], c.servers[id] = tr, s
		t.Cleanup(func() { tr.Close(); s.Stop() })
	}
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMessagesAndForwards(t *testing.T) {
	c := newCluster(t, 3)
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[1].Reachable(3) && c.tr[2].Reachable(1) })
	msgs := make([]protocol.Message, 1000)
	for i := range msgs {
		msgs[i] = protocol.Message{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: uint64(i + 1), Proposer: 1}}
	}
	if err := c.tr[1].Send(2, msgs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "1000 messages at node 2", func() bool { return c.nodes[2].count() == 1000 })
	ctx := context.Background()
	s, err := c.tr[1].Forward(ctx, 2, kv.Op{Kind: kv.OpIncrement, Key: "k", Delta: 1})
	if err != nil || string(s.Value) != "42" || s.Version != 4 || s.Requests != nil {
		t.Fatalf("forwarded increment: %v %v (its reply must leave the request table out: %d bytes)", s, err, len(s.Requests))
	}
	// An outcome query's answer is read from the table: its reply keeps it.
	if s, err := c.tr[1].Forward(ctx, 2, kv.Op{Kind: kv.OpOutcome, Key: "k", RequestID: "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"}); err != nil || !bytes.Equal(s.Requests, servedTable) {
		t.Fatalf("forwarded outcome query: %v %v, table %x", s, err, s.Requests)
	}
	_, err = c.tr[1].Forward(ctx, 3, kv.Op{Kind: kv.OpCompareAndSwap, Key: "k", Version: 2})
	var vm *kv.VersionMismatchError
	if !errors.As(err, &vm) || vm.Current != 3 || vm.Expected != 2 {
		t.Fatalf("forwarded stale cas: %v", err)
	}
	if _, err := c.tr[1].Forward(ctx, 9, kv.Op{Kind: kv.OpGet, Key: "k"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("forward to a non-member: %v", err)
	}
}

func TestDeadPeerIsUnreachable(t *testing.T) {
	c := newCluster(t, 2)
	waitFor(t, "link up", func() bool { return c.tr[1].Reachable(2) })
	c.tr[2].Close()
	c.servers[2].Stop()
	waitFor(t, "node 2 unreachable", func() bool { return !c.tr[1].Reachable(2) })
	if _, err := c.tr[1].Forward(context.Background(), 2, kv.Op{Kind: kv.OpPut, Key: "k"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("forward to a dead peer: %v", err)
	}
}

func TestForwardInFlightToSilentPeerIsUnknown(t *testing.T) {
	c := newCluster(t, 2)
	c.nodes[2].hold = make(chan struct{})
	c.nodes[2].seen = make(chan kv.Op, 1)
	waitFor(t, "link up", func() bool { return c.tr[1].Reachable(2) })
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.tr[1].Forward(context.Background(), 2, kv.Op{Kind: kv.OpIncrement, Key: "k", Delta: 1})
		done <- err
	}()
	<-c.nodes[2].seen
	c.tr[2].Close() // node 2 stops sending, heartbeats included
	err := <-done
	if !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("forward in flight: %v, want unknown outcome", err)
	}
	t.Logf("in-flight forward gave up %v after the peer went silent", time.Since(start))
	close(c.nodes[2].hold)
}

func TestLargeValuesSplitIntoFrames(t *testing.T) {
	// A receiver that takes frames of at most 8 MiB, and 10 MiB to send:
	// more than one frame may carry. (Small, so that under the race
	// detector the receiver answers the link's probes in time.)
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.MaxRecvFrameBytes, cfg.FrameBytes = 8<<20, 4<<20 })
	waitFor(t, "link up", func() bool { return c.tr[1].Reachable(2) })
	value := make([]byte, 1<<20)
	msgs := make([]protocol.Message, 10)
	for i := range msgs {
		msgs[i] = protocol.Message{Kind: protocol.MsgAccept, From: 1, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: uint64(i + 1), Proposer: 1},
			State: protocol.State{Value: value, Version: 1}}
	}
	if err := c.tr[1].Send(2, msgs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "10 large messages at node 2", func() bool { return c.nodes[2].count() == len(msgs) })
	if s := c.tr[1].Stats(); s.LinkFailures != 0 || s.Dropped != 0 {
		t.Fatalf("stats %+v: large values broke the link", s)
	}
}

func TestRepliesMatchTheirPeerAndRun(t *testing.T) {
	a, err := New(Config{Self: 1, Peers: map[protocol.NodeID]string{2: "127.0.0.1:1", 3: "127.0.0.1:1"}}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Config{Self: 1, Peers: map[protocol.NodeID]string{2: "127.0.0.1:1"}}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A restarted node must not hand out the forward IDs of its previous run.
	if a.nextID.Load() == b.nextID.Load() {
		t.Fatal("two runs start forward IDs at the same point")
	}
	ch := make(chan *peerpb.ForwardReply, 1)
	a.mu.Lock()
	a.pending[7] = pendingForward{peer: 2, ch: ch}
	a.mu.Unlock()
	a.resolve(3, &peerpb.ForwardReply{Id: 7, Value: []byte("from the wrong peer")})
	select {
	case r := <-ch:
		t.Fatalf("a reply from node 3 answered a forward to node 2: %v", r)
	default:
	}
	a.resolve(2, &peerpb.ForwardReply{Id: 7, Value: []byte("right")})
	if r := <-ch; string(r.GetValue()) != "right" {
		t.Fatalf("reply %v", r)
	}
}

func TestLeaveStopsForwardsButAnswersThoseInFlight(t *testing.T) {
	c, done := heldForward(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.tr[2].Leave(ctx)
	waitFor(t, "node 2 seen leaving", func() bool { return !c.tr[1].Reachable(2) })
	if _, err := c.tr[1].Forward(context.Background(), 2, kv.Op{Kind: kv.OpGet, Key: "k"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("forward to a leaving node: %v, want unreachable", err)
	}
	close(c.nodes[2].hold)
	if err := <-done; err != nil {
		t.Fatalf("forward in flight when its peer left: %v", err)
	}
}

// A peer that starts after this node is reached within the link's own
// reconnect backoff. gRPC keeps a backoff of its own per connection (1s
// after the first refused dial, growing to 120s), and while it runs every
// stream the link opens fails at once: a node that started before its
// peers, or whose peer was down a while, saw it unreachable for seconds
// after it came back (a survivor of a stop then counted too few acceptors).
func TestLateStartingPeerIsReachedWithinReconnectBackoff(t *testing.T) {
	lisA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lisB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrB := lisB.Addr().String()
	lisB.Close() // node 2 is not started yet: dials to it are refused
	cfg := Config{Heartbeat: 10 * time.Millisecond, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond}
	serve := func(self, peer protocol.NodeID, peerAddr string, lis net.Listener) *Transport {
		c := cfg
		c.Self, c.Peers = self, map[protocol.NodeID]string{peer: peerAddr}
		tr, err := New(c, &node{})
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(tr.ServerOptions()...)
		tr.Serve(lis, s)
		t.Cleanup(func() { tr.Close(); s.Stop() })
		return tr
	}
	a := serve(1, 2, addrB, lisA)
	waitFor(t, "a refused dial to node 2", func() bool { return a.Stats().LinkFailures > 0 })
	lisB, err = net.Listen("tcp", addrB)
	if err != nil {
		t.Skipf("node 2's port was taken meanwhile: %v", err)
	}
	serve(2, 1, lisA.Addr().String(), lisB)
	start := time.Now()
	waitFor(t, "node 2 reachable", func() bool { return a.Reachable(2) })
	// A few ReconnectMax and heartbeats; gRPC's default backoff would take
	// at least 800ms (1s less its 20% jitter).
	if took := time.Since(start); took > 600*time.Millisecond {
		t.Fatalf("node 2 reachable %v after it started; ReconnectMax is %v", took, cfg.ReconnectMax)
	}
}

// A node that stops runs the forwards it took to the end and sends their
// answers before it closes the transport: the peer that forwarded gets a
// result, not an unknown outcome.
func TestQuiesceWaitsForForwardsInFlightAndTheirAnswers(t *testing.T) {
	c, done := heldForward(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.tr[2].Leave(ctx)
	quiesced := make(chan struct{})
	go func() {
		c.tr[2].Quiesce(ctx)
		close(quiesced)
	}()
	select {
	case <-quiesced:
		t.Fatal("Quiesce returned while a forward was still being served")
	case <-time.After(50 * time.Millisecond):
	}
	close(c.nodes[2].hold)
	<-quiesced
	if ctx.Err() != nil {
		t.Fatal("Quiesce gave up at its deadline")
	}
	c.tr[2].Close() // nothing more leaves after Close
	if err := <-done; err != nil {
		t.Fatalf("forward answered by a node that stopped right after Quiesce: %v", err)
	}
}

// heldForward starts two nodes and a forward from node 1 that node 2 has
// taken and holds until c.nodes[2].hold is closed; done gets its result.
func heldForward(t *testing.T) (*cluster, <-chan error) {
	t.Helper()
	c := newCluster(t, 2)
	c.nodes[2].hold = make(chan struct{})
	c.nodes[2].seen = make(chan kv.Op, 1)
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) })
	done := make(chan error, 1)
	go func() {
		_, err := c.tr[1].Forward(context.Background(), 2, kv.Op{Kind: kv.OpIncrement, Key: "k", Delta: 1})
		done <- err
	}()
	<-c.nodes[2].seen
	return c, done
}
