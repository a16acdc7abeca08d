package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// testMaxFrame is the default MaxRecvFrameBytes.
const testMaxFrame = 64 << 20

func TestFrameRoundTrip(t *testing.T) {
	in := []*peerpb.Frame{
		{From: 1},
		{From: 2, Ping: 7, Messages: []*peerpb.Message{{Kind: 1, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100_000)}}},
		{From: 3, Pong: 7, Leaving: true},
	}
	var buf []byte
	for _, f := range in {
		var err error
		if buf, err = appendFrame(buf, f, testMaxFrame); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(buf))
	var body []byte
	for i, want := range in {
		got := &peerpb.Frame{}
		var err error
		if body, err = readFrame(r, body, got, testMaxFrame); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.GetFrom() != want.GetFrom() || got.GetPing() != want.GetPing() || got.GetPong() != want.GetPong() ||
			len(got.GetMessages()) != len(want.GetMessages()) || got.GetLeaving() != want.GetLeaving() {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
	}
	if _, err := readFrame(r, body, &peerpb.Frame{}, testMaxFrame); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestFrameReadErrors(t *testing.T) {
	whole, err := appendFrame(nil, &peerpb.Frame{From: 1, Messages: []*peerpb.Message{{Kind: 1, Key: []byte("key")}}}, testMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	tooLarge := binary.BigEndian.AppendUint32(nil, testMaxFrame+1)
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"cut in the header", whole[:2], io.ErrUnexpectedEOF},
		{"cut in the body", whole[:len(whole)-1], io.ErrUnexpectedEOF},
		{"larger than the bound", append(tooLarge, 0), errFrameTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tc.input)), nil, &peerpb.Frame{}, testMaxFrame)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 2, 0xff, 0xff})), nil, &peerpb.Frame{}, testMaxFrame); err == nil {
		t.Fatal("a body that is no Frame was read without error")
	}
}

// dialPeerPort connects to node id's peer port the way a link does, and
// returns the connection after the preface exchange.
func dialPeerPort(t *testing.T, c *cluster, id protocol.NodeID, preface []byte) (net.Conn, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", c.addrs[id])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(preface); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, _ := io.ReadAll(io.LimitReader(conn, int64(len(framePreface))))
	return conn, answer
}

// expectClosed waits until the receiver closed conn.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the receiver did not close the connection: %v (after %d bytes)", err, n)
	}
}

// What the receiving end refuses: each case ends the connection with a
// logged error, delivers and serves nothing, and leaves the links between
// the members working.
func TestPeerPortRefusesBadFrames(t *testing.T) {
	const maxFrame = 1 << 20
	limits := kv.Limits{MaxKeyBytes: 16, MaxValueBytes: 64}
	logs := &syncBuffer{}
	c := newClusterWith(t, 3, func(cfg *Config) {
		cfg.MaxRecvFrameBytes, cfg.FrameBytes, cfg.Limits = maxFrame, maxFrame/2, limits
		if cfg.Self == 2 {
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	})
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) && c.tr[3].Reachable(2) })
	frame := func(f *peerpb.Frame) []byte {
		b, err := appendFrame(nil, f, testMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := protocol.Message{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: 1, Proposer: 1}}
	msg := func(change func(*protocol.Message)) []byte {
		m := good
		change(&m)
		return frame(&peerpb.Frame{From: 1, Messages: []*peerpb.Message{ToWire(good), ToWire(m)}})
	}
	wire := func(change func(*peerpb.Message)) []byte {
		m := ToWire(good)
		change(m)
		return frame(&peerpb.Frame{From: 1, Messages: []*peerpb.Message{ToWire(good), m}})
	}
	fwd := func(change func(*peerpb.Forward)) []byte {
		f := &peerpb.Forward{Id: 7, Op: uint32(kv.OpPut), Key: []byte("k"), Value: []byte("v")}
		change(f)
		return frame(&peerpb.Frame{From: 1, Messages: []*peerpb.Message{ToWire(good)}, Forwards: []*peerpb.Forward{f}})
	}
	hello := frame(&peerpb.Frame{From: 1})
	whole := frame(&peerpb.Frame{From: 1, Messages: []*peerpb.Message{ToWire(good)}})
	for _, tc := range []struct {
		name    string
		preface []byte
		send    [][]byte
		log     string // in the receiver's log
	}{
		{"another framing version", []byte("CPXF\x02"), nil, "unknown framing version"},
		{"a non-member", framePreface, [][]byte{frame(&peerpb.Frame{From: 9, Messages: []*peerpb.Message{ToWire(good)}})}, "not a member"},
		{"a first frame over the hello bound", framePreface, [][]byte{binary.BigEndian.AppendUint32(nil, helloFrameBytes+1)}, "frame too large"},
		{"a first frame of 4 GiB", framePreface, [][]byte{binary.BigEndian.AppendUint32(nil, math.MaxUint32)}, "frame too large"},
		{"a first frame with items over the hello bound", framePreface, [][]byte{frame(&peerpb.Frame{From: 1,
			Messages: []*peerpb.Message{{Kind: 1, From: 1, To: 2, Key: bytes.Repeat([]byte("k"), helloFrameBytes)}}})}, "frame too large"},
		{"a member's frame over the configured bound", framePreface, [][]byte{hello, binary.BigEndian.AppendUint32(nil, maxFrame+1)}, "frame too large"},
		{"a frame cut short", framePreface, [][]byte{hello, whole[:len(whole)-3]}, ""},
		{"a body that is no frame", framePreface, [][]byte{{0, 0, 0, 2, 0xff, 0xff}}, ""},
		{"a frame of another member on the connection", framePreface, [][]byte{hello, frame(&peerpb.Frame{From: 3})}, "node 1's connection"},
		{"a message of kind 0", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.Kind = 0 })}, "unknown kind 0"},
		{"a message of an unknown kind", framePreface, [][]byte{hello, wire(func(m *peerpb.Message) { m.Kind = 99 })}, "unknown kind 99"},
		{"a message of a kind past 8 bits", framePreface, [][]byte{hello, wire(func(m *peerpb.Message) { m.Kind = 257 })}, "unknown kind 257"},
		{"a message from another node than its frame", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.From = 3 })}, "from node 3 on node 1's connection"},
		{"a message addressed to another node", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.To = 3 })}, "addressed to node 3"},
		{"a key over the limit", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.Key = strings.Repeat("k", 17) })}, "key too large"},
		{"a value over the limit", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.State.Value = make([]byte, 65) })}, "value too large"},
		{"a ballot counter of 2^64-1", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.Ballot.Counter = math.MaxUint64 })}, "ballot counter past"},
		{"a seen counter past MaxCounter", framePreface, [][]byte{hello, msg(func(m *protocol.Message) {
			m.Kind, m.From, m.To, m.Seen = protocol.MsgConflict, 1, 2, protocol.Ballot{Counter: protocol.MaxCounter + 1}
		})}, "ballot counter past"},
		{"a version past MaxVersion", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.State.Version = protocol.MaxVersion + 1 })}, "version"},
		{"an age of 2^64-1", framePreface, [][]byte{hello, msg(func(m *protocol.Message) { m.Age = math.MaxUint64 })}, "age"},
		{"a forward of an unknown operation", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.Op = 99 })}, "unknown operation 99"},
		{"a forward of operation 2^32-1", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.Op = math.MaxUint32 })}, "unknown operation"},
		{"a forward with a negative timeout", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.TimeoutNanos = -1 })}, "negative timeout"},
		{"a forward of an empty key", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.Key = nil })}, "key is empty"},
		{"a forward with a key over the limit", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.Key = bytes.Repeat([]byte("k"), 17) })}, "key too large"},
		{"a forward with a value over the limit", framePreface, [][]byte{hello, fwd(func(f *peerpb.Forward) { f.Value = make([]byte, 65) })}, "value too large"},
		{"a reply with a value over the limit", framePreface, [][]byte{hello, frame(&peerpb.Frame{From: 1,
			ForwardReplies: []*peerpb.ForwardReply{{Id: 1, Value: make([]byte, 65)}}})}, "value too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, served := c.nodes[2].count(), c.nodes[2].served.Load()
			conn, answer := dialPeerPort(t, c, 2, tc.preface)
			if !bytes.Equal(tc.preface, framePreface) {
				if len(answer) != 0 {
					t.Fatalf("answered %q to an unknown preface", answer)
				}
			} else {
				if !bytes.Equal(answer, framePreface) {
					t.Fatalf("answered %q, want %q", answer, framePreface)
				}
				_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				for _, b := range tc.send {
					if _, err := conn.Write(b); err != nil {
						t.Fatal(err)
					}
				}
				if tc.name == "a frame cut short" {
					conn.(*net.TCPConn).CloseWrite()
				}
				expectClosed(t, conn)
			}
			if got := c.nodes[2].count(); got != before {
				t.Fatalf("%d messages delivered", got-before)
			}
			if got := c.nodes[2].served.Load(); got != served {
				t.Fatalf("%d forwards served", got-served)
			}
			if tc.log != "" {
				waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), tc.log) })
			}
		})
	}
	// The refused connections are gone from the counts, and the members'
	// links still work.
	waitFor(t, "no unidentified connection left", func() bool {
		c.tr[2].connMu.Lock()
		defer c.tr[2].connMu.Unlock()
		return c.tr[2].unidentified == 0
	})
	if err := c.tr[1].Send(2, []protocol.Message{good}); err != nil {
		t.Fatal(err)
	}
	before := c.nodes[2].count()
	waitFor(t, "a member's message after the refusals", func() bool { return c.nodes[2].count() > before })
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A frame connection answers pings on itself; gRPC shares the port.
func TestPeerPortServesPingsAndGRPC(t *testing.T) {
	c := newCluster(t, 2)
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) })
	conn, answer := dialPeerPort(t, c, 2, framePreface)
	if !bytes.Equal(answer, framePreface) {
		t.Fatalf("answered %q", answer)
	}
	b, _ := appendFrame(nil, &peerpb.Frame{From: 1, Ping: 42}, helloFrameBytes)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	pong := &peerpb.Frame{}
	if _, err := readFrame(bufio.NewReader(conn), nil, pong, helloFrameBytes); err != nil || pong.GetPong() != 42 || pong.GetFrom() != 2 {
		t.Fatalf("answer to a ping: %v %v", pong, err)
	}

	gc, err := grpc.NewClient(c.addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC on the peer port: %v %v", r, err)
	}
}

// fakePeer listens for a link and hands over each connection it accepts.
// With preface, it answers the preface and then reads all and answers
// nothing more; without, it reads and answers nothing at all.
func fakePeer(t *testing.T, preface bool) (string, <-chan net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			if preface {
				head := make([]byte, len(framePreface))
				if _, err := io.ReadFull(conn, head); err == nil {
					_, _ = conn.Write(framePreface)
				}
				go func() { _, _ = io.Copy(io.Discard, conn) }()
			}
			accepted <- conn
		}
	}()
	return lis.Addr().String(), accepted
}

// A peer that accepts connections but never answers the preface (a hung
// proxy, another service) keeps the link down.
func TestLinkNeedsThePrefaceAnswered(t *testing.T) {
	addr, accepted := fakePeer(t, false)
	tr, err := New(Config{Self: 1, Peers: map[protocol.NodeID]string{2: addr}}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	conn := <-accepted
	defer conn.Close()
	if err := tr.Send(2, []protocol.Message{{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k"}}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send while the preface is unanswered: %v, want unreachable", err)
	}
	// Close ends the waiting dial at once, not after dialTimeout.
	start := time.Now()
	tr.Close()
	if took := time.Since(start); took > dialTimeout/2 {
		t.Fatalf("Close took %v with a dial waiting", took)
	}
}

// A peer that answers the preface and then nothing (a half-open
// connection, a hung path) loses the link once a probe goes unanswered:
// the link dials again instead of writing into it for minutes.
func TestLinkDropsAConnectionThatAnswersNoProbe(t *testing.T) {
	addr, accepted := fakePeer(t, true)
	tr, err := New(Config{Self: 1, Peers: map[protocol.NodeID]string{2: addr},
		Heartbeat: 10 * time.Millisecond, DeadAfter: time.Hour}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	first := <-accepted
	defer first.Close()
	select {
	case second := <-accepted:
		second.Close()
	case <-time.After(probeTimeout + 5*time.Second):
		t.Fatal("the link kept a connection that answered no probe")
	}
	if tr.Stats().LinkFailures == 0 {
		t.Fatal("the dropped connection was not counted")
	}
}

// A connection to the peer port that goes silent after the preface is
// closed after idleTimeout.
func TestPeerPortClosesSilentConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{Self: 1, Heartbeat: 10 * time.Millisecond, DeadAfter: 20 * time.Millisecond}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Serve(lis, grpc.NewServer())
	c := &cluster{addrs: map[protocol.NodeID]string{1: lis.Addr().String()}}
	conn, answer := dialPeerPort(t, c, 1, framePreface)
	if !bytes.Equal(answer, framePreface) {
		t.Fatalf("answered %q", answer)
	}
	start := time.Now()
	expectClosed(t, conn)
	if took := time.Since(start); took < tr.idleTimeout()/2 {
		t.Fatalf("closed after %v, before the idle timeout %v", took, tr.idleTimeout())
	}
}

// Connections that have not named their sender are bounded: past
// MaxUnidentifiedConns a new one is closed at once, and a slot frees when
// one of them ends. A member holds at most MaxConnsPerPeer: past it its
// oldest is closed, and its link still works.
func TestPeerPortBoundsConnections(t *testing.T) {
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.MaxUnidentifiedConns, cfg.MaxConnsPerPeer = 2, 2 })
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) })
	var waiting []net.Conn
	for range 2 {
		conn, answer := dialPeerPort(t, c, 2, framePreface)
		if !bytes.Equal(answer, framePreface) {
			t.Fatalf("connection within the bound answered %q", answer)
		}
		waiting = append(waiting, conn)
	}
	over, answer := dialPeerPort(t, c, 2, framePreface)
	if len(answer) != 0 {
		t.Fatalf("a connection past MaxUnidentifiedConns answered %q", answer)
	}
	expectClosed(t, over)
	if got := c.tr[2].Stats().RefusedConns; got != 1 {
		t.Fatalf("RefusedConns = %d, want 1", got)
	}
	waiting[0].Close()
	waitFor(t, "a slot freed", func() bool {
		conn, answer := dialPeerPort(t, c, 2, framePreface)
		defer conn.Close()
		return bytes.Equal(answer, framePreface)
	})

	waiting[1].Close()
	waitFor(t, "no unidentified connection left", func() bool {
		c.tr[2].connMu.Lock()
		defer c.tr[2].connMu.Unlock()
		return c.tr[2].unidentified == 0
	})

	// Member 1: its link's connection, then two more that say hello as 1.
	hello, _ := appendFrame(nil, &peerpb.Frame{From: 1}, helloFrameBytes)
	var mine []net.Conn
	for range 2 {
		conn, _ := dialPeerPort(t, c, 2, framePreface)
		if _, err := conn.Write(hello); err != nil {
			t.Fatal(err)
		}
		mine = append(mine, conn)
	}
	peerConns := func() int {
		c.tr[2].connMu.Lock()
		defer c.tr[2].connMu.Unlock()
		return len(c.tr[2].byPeer[1])
	}
	// The link's connection was the oldest: closed, it reconnects and
	// pushes out the oldest of ours.
	expectClosed(t, mine[0])
	if n := peerConns(); n > 2 {
		t.Fatalf("member 1 holds %d connections, limit 2", n)
	}
	waitFor(t, "the link back", func() bool { return c.tr[1].Reachable(2) })
	before := c.nodes[2].count()
	if err := c.tr[1].Send(2, []protocol.Message{{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a message on the link", func() bool { return c.nodes[2].count() > before })
}

// A forward runs at most MaxForwardTimeout, however long (or unbounded)
// the deadline it asks for.
func TestServedForwardsAreCapped(t *testing.T) {
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.MaxForwardTimeout = 100 * time.Millisecond })
	c.nodes[2].hold = make(chan struct{}) // never released: only the deadline ends a forward
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) })
	for _, tc := range []struct {
		name    string
		timeout time.Duration // 0: no deadline
	}{
		{"no deadline", 0},
		{"a day", 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := c.tr[1].Forward(ctx, 2, kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("v")})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a forward held past its cap succeeded")
				}
				if took := time.Since(start); took < 100*time.Millisecond {
					t.Fatalf("answered after %v, before the cap", took)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the forward ran past MaxForwardTimeout")
			}
		})
	}
}
