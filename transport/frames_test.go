package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

func TestFrameRoundTrip(t *testing.T) {
	in := []*peerpb.Frame{
		{From: 1},
		{From: 2, Ping: 7, Messages: []*peerpb.Message{{Kind: 1, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100_000)}}},
		{From: 3, Pong: 7, Leaving: true},
	}
	var buf []byte
	for _, f := range in {
		var err error
		if buf, err = appendFrame(buf, f); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(buf))
	var body []byte
	for i, want := range in {
		got := &peerpb.Frame{}
		var err error
		if body, err = readFrame(r, body, got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.GetFrom() != want.GetFrom() || got.GetPing() != want.GetPing() || got.GetPong() != want.GetPong() ||
			len(got.GetMessages()) != len(want.GetMessages()) || got.GetLeaving() != want.GetLeaving() {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
	}
	if _, err := readFrame(r, body, &peerpb.Frame{}); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestFrameReadErrors(t *testing.T) {
	whole, err := appendFrame(nil, &peerpb.Frame{From: 1, Messages: []*peerpb.Message{{Kind: 1, Key: []byte("key")}}})
	if err != nil {
		t.Fatal(err)
	}
	tooLarge := binary.BigEndian.AppendUint32(nil, maxFrameBytes+1)
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
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tc.input)), nil, &peerpb.Frame{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 2, 0xff, 0xff})), nil, &peerpb.Frame{}); err == nil {
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

// What the receiving end refuses: each case ends the connection, delivers
// nothing, and leaves the links between the members working.
func TestPeerPortRefusesBadFrames(t *testing.T) {
	c := newCluster(t, 2)
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) })
	frame := func(f *peerpb.Frame) []byte {
		b, err := appendFrame(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	msg := []*peerpb.Message{ToWire(protocol.Message{Kind: protocol.MsgPrepare, From: 9, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: 1, Proposer: 9}})}
	whole := frame(&peerpb.Frame{From: 1, Messages: msg})
	for _, tc := range []struct {
		name    string
		preface []byte
		send    []byte
	}{
		{"another framing version", []byte("CPXF\x02"), nil},
		{"a non-member", framePreface, frame(&peerpb.Frame{From: 9, Messages: msg})},
		{"a frame over the bound", framePreface, binary.BigEndian.AppendUint32(nil, maxFrameBytes+1)},
		{"a frame cut short", framePreface, whole[:len(whole)-3]},
		{"a body that is no frame", framePreface, []byte{0, 0, 0, 2, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.nodes[2].count()
			conn, answer := dialPeerPort(t, c, 2, tc.preface)
			if !bytes.Equal(tc.preface, framePreface) {
				if len(answer) != 0 {
					t.Fatalf("answered %q to an unknown preface", answer)
				}
				return
			}
			if !bytes.Equal(answer, framePreface) {
				t.Fatalf("answered %q, want %q", answer, framePreface)
			}
			_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.name == "a frame cut short" {
				conn.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, conn)
			if got := c.nodes[2].count(); got != before {
				t.Fatalf("%d messages delivered", got-before)
			}
		})
	}
	if err := c.tr[1].Send(2, []protocol.Message{{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k"}}); err != nil {
		t.Fatal(err)
	}
	before := c.nodes[2].count()
	waitFor(t, "a member's message after the refusals", func() bool { return c.nodes[2].count() > before })
}

// A frame connection answers pings on itself; gRPC shares the port.
func TestPeerPortServesPingsAndGRPC(t *testing.T) {
	c := newCluster(t, 2)
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) })
	conn, answer := dialPeerPort(t, c, 2, framePreface)
	if !bytes.Equal(answer, framePreface) {
		t.Fatalf("answered %q", answer)
	}
	b, _ := appendFrame(nil, &peerpb.Frame{From: 1, Ping: 42})
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	pong := &peerpb.Frame{}
	if _, err := readFrame(bufio.NewReader(conn), nil, pong); err != nil || pong.GetPong() != 42 || pong.GetFrom() != 2 {
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
