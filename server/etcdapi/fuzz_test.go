package etcdapi_test

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/etcdapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// FuzzRequests decodes bytes as a Range, Put, DeleteRange or Txn request,
// as the gRPC server does with a client's bytes, and runs it on a small
// store: it never panics; it fails only with a status whose code is one of
// a refusal's (never Internal: every error is classified); a Range answers
// only keys of its range, no more than its count, none past its limit.
func FuzzRequests(f *testing.F) {
	seeds := []proto.Message{
		&etcdpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: 2},
		&etcdpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortOrder: etcdpb.RangeRequest_DESCEND, SortTarget: etcdpb.RangeRequest_VALUE},
		&etcdpb.RangeRequest{Key: []byte("a/"), RangeEnd: []byte("a0"), SortTarget: etcdpb.RangeRequest_CREATE, Limit: 1},
		&etcdpb.PutRequest{Key: []byte("a/1"), Value: []byte("x"), PrevKv: true},
		&etcdpb.DeleteRangeRequest{Key: []byte("a/"), RangeEnd: []byte("a0"), PrevKv: true},
		&etcdpb.TxnRequest{Compare: []*etcdpb.Compare{{Key: []byte("a/1"), Target: etcdpb.Compare_CREATE, TargetUnion: &etcdpb.Compare_CreateRevision{}}},
			Success: []*etcdpb.RequestOp{{Request: &etcdpb.RequestOp_RequestPut{RequestPut: &etcdpb.PutRequest{Key: []byte("a/1"), Value: []byte("y")}}}}},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), b)
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		b := clientapitest.New()
		ctx := context.Background()
		for _, k := range []string{"a/1", "a/2", "a/3", "b", "\x00reserved"} {
			if _, err := b.Do(ctx, kv.Op{Kind: kv.OpPut, Key: k, Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
		}
		s := etcdapi.New(etcdapi.Config{}, b)
		var err error
		switch kind % 4 {
		case 0:
			var r etcdpb.RangeRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			var resp *etcdpb.RangeResponse
			if resp, err = s.Range(ctx, &r); err == nil {
				checkRange(t, &r, resp)
			}
		case 1:
			var r etcdpb.PutRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = s.Put(ctx, &r)
		case 2:
			var r etcdpb.DeleteRangeRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = s.DeleteRange(ctx, &r)
		case 3:
			var r etcdpb.TxnRequest
			if proto.Unmarshal(data, &r) != nil {
				return
			}
			_, err = s.Txn(ctx, &r)
		}
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		switch {
		case !ok:
			t.Fatalf("not a status: %v", err)
		case st.Code() == codes.InvalidArgument, st.Code() == codes.Unimplemented, st.Code() == codes.FailedPrecondition,
			st.Code() == codes.NotFound && kind%4 == 0:
		default:
			t.Fatalf("unexpected %v", err)
		}
	})
}

func checkRange(t *testing.T, r *etcdpb.RangeRequest, resp *etcdpb.RangeResponse) {
	t.Helper()
	if int64(len(resp.Kvs)) > max(resp.Count, 0) || (r.Limit > 0 && int64(len(resp.Kvs)) > r.Limit) {
		t.Fatalf("%d kvs, count %d, limit %d", len(resp.Kvs), resp.Count, r.Limit)
	}
	for _, kv := range resp.Kvs {
		in := bytes.Equal(kv.Key, r.Key)
		if len(r.RangeEnd) > 0 {
			in = bytes.Compare(kv.Key, r.Key) >= 0 && (bytes.Equal(r.RangeEnd, []byte{0}) || bytes.Compare(kv.Key, r.RangeEnd) < 0)
		}
		if !in || kv.Key[0] == 0 {
			t.Fatalf("key %q outside [%q, %q) or reserved", kv.Key, r.Key, r.RangeEnd)
		}
	}
}
