package clientapi_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
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
