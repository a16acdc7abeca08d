package clientapi

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// A fuzz target of the gRPC Batch path: the bytes of a BatchRequest, as
// gRPC hands them to proto.Unmarshal, then the real handler. `go test`
// runs its seeds; scripts/fuzz.sh fuzzes it (README.md, "make fuzz").

// maxFuzzBatchOps bounds the ops of one input (the handler runs them).
const maxFuzzBatchOps = 256

// batchKinds is the API's table of Batch op kinds (api/caspaxos.proto).
var batchKinds = map[caspaxospb.Op_Kind]kv.OpKind{
	caspaxospb.Op_GET: kv.OpGet, caspaxospb.Op_PUT: kv.OpPut, caspaxospb.Op_CREATE: kv.OpCreate,
	caspaxospb.Op_COMPARE_AND_SWAP: kv.OpCompareAndSwap, caspaxospb.Op_DELETE: kv.OpDelete, caspaxospb.Op_INCREMENT: kv.OpIncrement,
}

// FuzzBatch: every op of a BatchRequest that unmarshals is answered once,
// under its id, and the stream ends cleanly; exactly the ops of a known
// kind within the limits reach the backend, converted field for field; a
// refusal carries a code of the error table (never internal: the backend
// here cannot fail), an unknown kind bad_request; an answer is what the
// backend returned.
func FuzzBatch(f *testing.F) {
	for _, ops := range [][]*caspaxospb.Op{
		{{Id: 1, Kind: caspaxospb.Op_GET, Key: []byte("k")}},
		{
			{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("v"), TimeoutNanos: int64(time.Second)},
			{Id: 2, Kind: caspaxospb.Op_CREATE, Key: []byte("k"), Value: []byte("v")},
			{Id: 3, Kind: caspaxospb.Op_COMPARE_AND_SWAP, Key: []byte("k"), Version: 1, Value: []byte("w")},
			{Id: 4, Kind: caspaxospb.Op_DELETE, Key: []byte("k"), Version: 2},
			{Id: 5, Kind: caspaxospb.Op_INCREMENT, Key: []byte("n"), Delta: -9},
		},
		{
			{Id: 7, Kind: 99, Key: []byte("k")},
			{Id: 7, Kind: caspaxospb.Op_PUT, Key: []byte("much too long a key for the limit"), TimeoutNanos: -1},
			{Id: 8, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("much too long a value for the limit")},
			{Id: 9, Kind: caspaxospb.Op_GET},
			{Id: 10, Kind: caspaxospb.Op_KIND_UNSPECIFIED, Key: []byte("k")},
		},
		{ // leases: on the writes that take one, and on ops that do not
			{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("v"), Lease: 7},
			{Id: 2, Kind: caspaxospb.Op_CREATE, Key: []byte("k"), Value: []byte("v"), Lease: 1},
			{Id: 3, Kind: caspaxospb.Op_DELETE, Key: []byte("k"), Lease: 7},
			{Id: 4, Kind: caspaxospb.Op_GET, Key: []byte("k"), Lease: 7},
		},
		{ // request IDs: a UUIDv7, a malformed one, one on a read
			{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("v"), RequestId: "0192d7a4-5e1b-7c3d-8e4f-a1b2c3d4e5f6"},
			{Id: 2, Kind: caspaxospb.Op_INCREMENT, Key: []byte("n"), Delta: 1, RequestId: "00000000000000000000000000000000000"},
			{Id: 3, Kind: caspaxospb.Op_GET, Key: []byte("k"), RequestId: "0192d7a4-5e1b-7c3d-8e4f-a1b2c3d4e5f6"},
		},
	} {
		b, err := proto.Marshal(&caspaxospb.BatchRequest{Ops: ops})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var req caspaxospb.BatchRequest
		if err := proto.Unmarshal(msg, &req); err != nil || len(req.GetOps()) > maxFuzzBatchOps {
			return // gRPC refuses it before the handler
		}
		b := &recordingBackend{}
		g := newGRPCAPI(GRPCConfig{Limits: kv.Limits{MaxKeyBytes: 16, MaxValueBytes: 16}, RequestTimeout: 5 * time.Second}, b)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s := &fakeBatchStream{ctx: ctx, reqs: []*caspaxospb.BatchRequest{&req}}
		if err := g.Batch(s); err != nil {
			t.Fatalf("Batch ended with %v", err)
		}
		checkBatch(t, g.cfg.Limits, req.GetOps(), s.results(), b.seen())
	})
}

// checkBatch checks FuzzBatch's properties of ops, their results and the
// ops the backend saw.
func checkBatch(t *testing.T, limits kv.Limits, ops []*caspaxospb.Op, results []*caspaxospb.OpResult, seen []string) {
	t.Helper()
	var wantIDs, gotIDs []uint64
	var wantSeen []string
	refused := map[uint64]bool{} // ids of some op refused before the backend
	for _, o := range ops {
		wantIDs = append(wantIDs, o.GetId())
		kind, ok := batchKinds[o.GetKind()]
		op := fuzzOp(o, kind)
		if ok && op.Validate(limits) == nil {
			wantSeen = append(wantSeen, describeOp(op))
		} else {
			refused[o.GetId()] = true
		}
	}
	for _, r := range results {
		gotIDs = append(gotIDs, r.GetId())
		code := r.GetError().GetCode()
		if r.GetError() == nil {
			continue
		}
		if _, ok := errorTable[code]; !ok || code == CodeInternal || r.GetMessage() == "" {
			t.Fatalf("result %v: code %q not of the table, or internal, or no message", r, code)
		}
		if code == CodeBadRequest || code == CodeKeyTooLarge || code == CodeValueTooLarge {
			if !refused[r.GetId()] {
				t.Fatalf("result %v refused an op of id %d that is valid", r, r.GetId())
			}
		}
	}
	checkAnswers(t, limits, ops, results)
	slices.Sort(wantIDs)
	slices.Sort(gotIDs)
	if !slices.Equal(wantIDs, gotIDs) {
		t.Fatalf("ops %v answered by results of ids %v", wantIDs, gotIDs)
	}
	slices.Sort(wantSeen)
	if !slices.Equal(wantSeen, seen) {
		t.Fatalf("the backend saw\n%q\nwant\n%q", seen, wantSeen)
	}
}

// checkAnswers: the result of each valid op whose id is unique is what
// its op returns on the backend (an absent key).
func checkAnswers(t *testing.T, limits kv.Limits, ops []*caspaxospb.Op, results []*caspaxospb.OpResult) {
	t.Helper()
	ids := map[uint64]int{}
	for _, o := range ops {
		ids[o.GetId()]++
	}
	byID := map[uint64]*caspaxospb.OpResult{}
	for _, r := range results {
		byID[r.GetId()] = r
	}
	for _, o := range ops {
		kind, ok := batchKinds[o.GetKind()]
		op := fuzzOp(o, kind)
		r := byID[o.GetId()]
		if !ok || ids[o.GetId()] > 1 || op.Validate(limits) != nil || r == nil {
			continue
		}
		s, err := (&recordingBackend{}).Do(context.Background(), op)
		if err == nil && op.Kind == kv.OpGet {
			err = kv.ErrNotFound // the key is absent
		}
		var n int64
		if err == nil && op.Kind == kv.OpIncrement {
			n, err = kv.Integer(s)
		}
		if err != nil {
			code, current := kv.Code(err)
			if r.GetError().GetCode() != code || r.GetError().GetCurrentVersion() != current {
				t.Fatalf("op %v answered %v, want code %q current %d", o, r, code, current)
			}
			continue
		}
		if r.GetError() != nil || r.GetVersion() != s.Version || r.GetInteger() != n || len(r.GetValue()) != 0 {
			t.Fatalf("op %v answered %v, want version %d integer %d", o, r, s.Version, n)
		}
	}
}

// fuzzOp is the op the handler should make of o, request ID included
// (a malformed one is refused before the backend).
func fuzzOp(o *caspaxospb.Op, kind kv.OpKind) kv.Op {
	return kv.Op{Kind: kind, Key: string(o.GetKey()), Value: o.GetValue(), Version: o.GetVersion(), Delta: o.GetDelta(), RequestID: o.GetRequestId(),
		Lease: o.GetLease()}
}

func describeOp(op kv.Op) string {
	return fmt.Sprintf("%d %q %q %d %d %q %d", op.Kind, op.Key, op.Value, op.Version, op.Delta, op.RequestID, op.Lease)
}

// recordingBackend records the ops it runs and runs each on an absent key,
// with the store's change functions.
type recordingBackend struct {
	mu  sync.Mutex
	ops []string
}

func (b *recordingBackend) List(context.Context, kv.ListRequest, func(string) (bool, error), func(kv.ListItem) error) (bool, error) {
	return false, nil
}

func (b *recordingBackend) Do(_ context.Context, op kv.Op) (protocol.State, error) {
	b.mu.Lock()
	b.ops = append(b.ops, describeOp(op))
	b.mu.Unlock()
	ch := op.Change()
	if ch == nil {
		return protocol.State{}, nil
	}
	w, err := ch(protocol.State{})
	switch {
	case err != nil:
		return protocol.State{}, err
	case w.Kind == protocol.WriteSet:
		return protocol.State{Value: w.Value, Version: 1}, nil
	case w.Kind == protocol.WriteDelete:
		return protocol.State{Version: 1, Deleted: true}, nil
	}
	return protocol.State{}, nil
}

func (b *recordingBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(slices.Values(b.ops))
}

func (b *recordingBackend) Health(context.Context) error { return nil }

func (b *recordingBackend) Members(context.Context) (Membership, error) { return Membership{}, nil }

// fakeBatchStream is the server side of a Batch stream whose client sends
// reqs and closes its side.
type fakeBatchStream struct {
	grpc.ServerStream // nil: only the methods below are called
	ctx               context.Context

	mu   sync.Mutex
	reqs []*caspaxospb.BatchRequest
	sent []*caspaxospb.OpResult
}

func (s *fakeBatchStream) Context() context.Context { return s.ctx }

func (s *fakeBatchStream) Recv() (*caspaxospb.BatchRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil, io.EOF
	}
	r := s.reqs[0]
	s.reqs = s.reqs[1:]
	return r, nil
}

func (s *fakeBatchStream) Send(r *caspaxospb.BatchResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, r.GetResults()...)
	return nil
}

func (s *fakeBatchStream) results() []*caspaxospb.OpResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}
