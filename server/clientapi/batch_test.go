package clientapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// openBatch opens a Batch stream to b's gRPC API for the test.
func openBatch(t *testing.T, b *clientapitest.Backend) caspaxospb.KV_BatchClient {
	t.Helper()
	kvc, _ := grpcClient(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	s, err := kvc.Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every op of a Batch is answered by id with what its unary call answers,
// refusals included; one message may carry many ops.
func TestBatchAnswersEachOp(t *testing.T) {
	s := openBatch(t, clientapitest.New())
	// Ops of one message run concurrently: each test case's ops are sent
	// only after the earlier ones were answered.
	type want struct {
		code    string
		value   string
		version uint64
		integer int64
	}
	steps := []struct {
		op   *caspaxospb.Op
		want want
	}{
		{&caspaxospb.Op{Kind: caspaxospb.Op_GET, Key: []byte("k")}, want{code: "not_found"}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("a")}, want{version: 1}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_GET, Key: []byte("k")}, want{value: "a", version: 1}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_CREATE, Key: []byte("k"), Value: []byte("b")}, want{code: "version_mismatch", version: 1}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_COMPARE_AND_SWAP, Key: []byte("k"), Version: 1, Value: []byte("b")}, want{version: 2}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_INCREMENT, Key: []byte("k"), Delta: 1}, want{code: "not_an_integer"}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_INCREMENT, Key: []byte("n"), Delta: 5}, want{version: 1, integer: 5}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_DELETE, Key: []byte("k"), Version: 7}, want{code: "version_mismatch", version: 2}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_DELETE, Key: []byte("k")}, want{version: 3}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_PUT, Key: []byte("much too long"), Value: []byte("a")}, want{code: "key_too_large"}},
		{&caspaxospb.Op{Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("much too long")}, want{code: "value_too_large"}},
		{&caspaxospb.Op{Kind: 99, Key: []byte("k")}, want{code: "bad_request"}},
	}
	for i, st := range steps {
		st.op.Id = uint64(100 + i)
		if err := s.Send(&caspaxospb.BatchRequest{Ops: []*caspaxospb.Op{st.op}}); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != 1 {
			t.Fatalf("step %d: %d results", i, len(resp.GetResults()))
		}
		r := resp.GetResults()[0]
		// A refusal's version is the key's current one.
		got := want{code: r.GetError().GetCode(), value: string(r.GetValue()), version: r.GetVersion(), integer: r.GetInteger()}
		if r.GetError() != nil {
			got.version = r.GetError().GetCurrentVersion()
		}
		if r.GetId() != st.op.Id || got != st.want {
			t.Errorf("step %d (%v): id %d %+v, want id %d %+v (%s)", i, st.op.GetKind(), r.GetId(), got, st.op.Id, st.want, r.GetMessage())
		}
	}
	// Many ops in one message, each answered once.
	var ops []*caspaxospb.Op
	for i := range 50 {
		ops = append(ops, &caspaxospb.Op{Id: uint64(1000 + i), Kind: caspaxospb.Op_INCREMENT, Key: []byte("c"), Delta: 1})
	}
	if err := s.Send(&caspaxospb.BatchRequest{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	answered := map[uint64]bool{}
	for len(answered) < len(ops) {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if answered[r.GetId()] || r.GetId() < 1000 || r.GetId() >= 1050 || r.GetError() != nil {
				t.Fatalf("result %v", r)
			}
			answered[r.GetId()] = true
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the client closed its side: %v, want the stream's clean end", err)
	}
}

// An op's own timeout bounds it: a write held past it is answered as an
// unknown outcome.
func TestBatchOpTimeout(t *testing.T) {
	b := clientapitest.New()
	_, release := b.HoldWrites()
	defer release()
	s := openBatch(t, b)
	op := &caspaxospb.Op{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("v"), TimeoutNanos: int64(50 * time.Millisecond)}
	if err := s.Send(&caspaxospb.BatchRequest{Ops: []*caspaxospb.Op{op}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; r.GetError().GetCode() != "unknown_outcome" {
		t.Fatalf("held write past its timeout: %v", r)
	}
}

// countingBackend counts the ops run.
type countingBackend struct {
	*clientapitest.Backend
	ops atomic.Int64
}

func (c *countingBackend) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	c.ops.Add(1)
	return c.Backend.Do(ctx, op)
}

// A client that sends ops and never reads their results costs the node a
// bounded number of ops and bytes: past GRPCConfig's bounds the stream is
// not read (flow control holds the client back). Once the client reads,
// every op it sent is answered.
func TestBatchClientThatDoesNotRead(t *testing.T) {
	const (
		perMsg = 100
		// What the transports hold unread past the stream's bounds: the
		// client's fixed 64 KiB window, the server's 64 KiB write quota and
		// one reply being written (batchReplyBytes).
		transportBytes = 64<<10 + 64<<10 + 1<<20
	)
	// The ops bound shows here: the ops run stop at it. The bytes bound
	// caps the results waiting, not the ops run (TestBatchWaitRoom).
	// Each case sends more ops than the node's receive window holds, so
	// that a client held back shows.
	tests := []struct {
		name      string
		total     int // ops the client sends
		keySize   int
		valueSize int
		ops       int
		maxRun    int // ops the backend may run before the client reads
	}{
		{"small results", 20000, 1, 1 << 10, 64, 64 + transportBytes/(1<<10)},
		{"large results", 1000, 1 << 10, 32 << 10, 16, 16 + transportBytes/(32<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &countingBackend{Backend: clientapitest.New()}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			clientapi.RegisterGRPC(srv, clientapi.GRPCConfig{Limits: kv.DefaultLimits,
				MaxBatchInflightOps: tt.ops}, b)
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)
			// Fixed windows: no BDP estimation growing them.
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			kvc := caspaxospb.NewKVClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			key := bytes.Repeat([]byte("k"), tt.keySize)
			if _, err := kvc.Put(ctx, &caspaxospb.PutRequest{Key: key, Value: make([]byte, tt.valueSize)}); err != nil {
				t.Fatal(err)
			}
			b.ops.Store(0)
			s, err := kvc.Batch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var sent atomic.Int64
			sendDone := make(chan error, 1)
			go func() {
				for i := 0; i < tt.total; i += perMsg {
					ops := make([]*caspaxospb.Op, perMsg)
					for j := range ops {
						ops[j] = &caspaxospb.Op{Id: uint64(i + j), Kind: caspaxospb.Op_GET, Key: key}
					}
					if err := s.Send(&caspaxospb.BatchRequest{Ops: ops}); err != nil {
						sendDone <- err
						return
					}
					sent.Add(perMsg)
				}
				sendDone <- s.CloseSend()
			}()
			// The node runs ops until its bounds hold the stream; then
			// nothing moves. Wait for 30 polls in a row without a change.
			last, still := int64(-1), 0
			for deadline := time.Now().Add(10 * time.Second); still < 30; {
				ran := b.ops.Load()
				if ran > int64(tt.maxRun) {
					t.Fatalf("the node ran %d ops for a client that reads nothing, bound %d (client sent %d)", ran, tt.maxRun, sent.Load())
				}
				if ran == last {
					still++
				} else {
					last, still = ran, 0
				}
				if time.Now().After(deadline) {
					t.Fatalf("ops run kept changing: %d", ran)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if last == 0 || sent.Load() == int64(tt.total) {
				t.Fatalf("the node ran %d ops and the client sent %d of %d: want some run and the client held back", last, sent.Load(), tt.total)
			}
			// The client reads: everything it sent is answered.
			answered := make(map[uint64]bool, tt.total)
			for len(answered) < tt.total {
				resp, err := s.Recv()
				if err != nil {
					t.Fatalf("after %d answers: %v", len(answered), err)
				}
				for _, r := range resp.GetResults() {
					if r.GetError() != nil || len(r.GetValue()) != tt.valueSize || answered[r.GetId()] {
						t.Fatalf("result %d: %v %s", r.GetId(), r.GetError(), r.GetMessage())
					}
					answered[r.GetId()] = true
				}
			}
			if err := <-sendDone; err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("stream end: %v", err)
			}
		})
	}
}
