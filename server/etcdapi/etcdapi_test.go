package etcdapi_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/etcdapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// serve serves the etcd API over b on a loopback port until the test ends.
func serve(t *testing.T, b *clientapitest.Backend) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(etcdapi.ServerOptions()...)
	etcdapi.New(etcdapi.Config{MemberID: 1, Version: etcdapi.APIVersion}, b).Register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func put(t *testing.T, c etcdpb.KVClient, k, v string) *etcdpb.PutResponse {
	t.Helper()
	r, err := c.Put(context.Background(), &etcdpb.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// prefixEnd is clientv3's range end of a prefix.
func prefixEnd(p string) []byte {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return []byte{0}
}

// TestRangeOverPages: a range longer than one listing page comes whole,
// in order, with limit, count, keys_only, count_only and sorts honoured,
// and nothing outside the range.
func TestRangeOverPages(t *testing.T) {
	b := clientapitest.New()
	c := etcdpb.NewKVClient(serve(t, b))
	ctx := context.Background()
	n := kv.MaxListLimit + 5
	for i := range n {
		if _, err := b.Do(ctx, kv.Op{Kind: kv.OpPut, Key: fmt.Sprintf("p/%05d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	put(t, c, "p", "outside")
	put(t, c, "p0", "outside")
	put(t, c, "o/", "outside")
	last := put(t, c, "p/00003", "newest")
	tests := []struct {
		name      string
		req       *etcdpb.RangeRequest
		count     int64
		kvs       int
		more      bool
		first     string
		withValue bool
	}{
		{"whole prefix", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/")}, int64(n), n, false, "p/00000", true},
		{"limit", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), Limit: 3}, int64(n), 3, true, "p/00000", true},
		{"keys only", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), Limit: 2, KeysOnly: true}, int64(n), 2, true, "p/00000", false},
		{"count only", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), CountOnly: true}, int64(n), 0, false, "", false},
		{"from a key in the middle", &etcdpb.RangeRequest{Key: []byte("p/10000"), RangeEnd: prefixEnd("p/")}, 5, 5, false, "p/10000", true},
		{"bounded range", &etcdpb.RangeRequest{Key: []byte("p/00002"), RangeEnd: []byte("p/00004")}, 2, 2, false, "p/00002", true},
		{"from key", &etcdpb.RangeRequest{Key: []byte("p/10004"), RangeEnd: []byte{0}}, 2, 2, false, "p/10004", true},
		{"descending", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), Limit: 1, SortOrder: etcdpb.RangeRequest_DESCEND}, int64(n), 1, true, fmt.Sprintf("p/%05d", n-1), true},
		{"newest first", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), Limit: 1, SortOrder: etcdpb.RangeRequest_DESCEND, SortTarget: etcdpb.RangeRequest_MOD}, int64(n), 1, true, "p/00003", true},
		{"min mod revision", &etcdpb.RangeRequest{Key: []byte("p/"), RangeEnd: prefixEnd("p/"), MinModRevision: last.Header.Revision}, int64(n), 1, false, "p/00003", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Range(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Count != tc.count || len(r.Kvs) != tc.kvs || r.More != tc.more {
				t.Fatalf("count %d, %d kvs, more %v; want %d, %d, %v", r.Count, len(r.Kvs), r.More, tc.count, tc.kvs, tc.more)
			}
			for i, kv := range r.Kvs {
				if !strings.HasPrefix(string(kv.Key), "p") || (len(kv.Value) > 0) != tc.withValue {
					t.Fatalf("kv %d: %q=%q", i, kv.Key, kv.Value)
				}
				if i > 0 && tc.req.SortOrder == etcdpb.RangeRequest_NONE && string(r.Kvs[i-1].Key) >= string(kv.Key) {
					t.Fatalf("out of order at %d: %q then %q", i, r.Kvs[i-1].Key, kv.Key)
				}
			}
			if tc.first != "" && string(r.Kvs[0].Key) != tc.first {
				t.Fatalf("first %q, want %q", r.Kvs[0].Key, tc.first)
			}
		})
	}
}

// TestTxnIsAtomicOnItsKey: increments through Txn (compare the value read,
// put the next) from many clients lose none: each Txn's write applies to
// the state its compares saw.
func TestTxnIsAtomicOnItsKey(t *testing.T) {
	b := clientapitest.New()
	c := etcdpb.NewKVClient(serve(t, b))
	ctx := context.Background()
	put(t, c, "n", "0")
	const clients, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			for done := 0; done < each; {
				g, err := c.Range(ctx, &etcdpb.RangeRequest{Key: []byte("n")})
				if err != nil {
					errs <- err
					return
				}
				var v int
				fmt.Sscan(string(g.Kvs[0].Value), &v)
				r, err := c.Txn(ctx, &etcdpb.TxnRequest{
					Compare: []*etcdpb.Compare{{Key: []byte("n"), Target: etcdpb.Compare_VALUE, TargetUnion: &etcdpb.Compare_Value{Value: g.Kvs[0].Value}}},
					Success: []*etcdpb.RequestOp{{Request: &etcdpb.RequestOp_RequestPut{RequestPut: &etcdpb.PutRequest{Key: []byte("n"), Value: []byte(fmt.Sprint(v + 1))}}}},
				})
				if err != nil {
					errs <- err
					return
				}
				if r.Succeeded {
					done++
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	g, err := c.Range(ctx, &etcdpb.RangeRequest{Key: []byte("n")})
	if err != nil || string(g.Kvs[0].Value) != fmt.Sprint(clients*each) {
		t.Fatalf("after %d increments: %v %v", clients*each, g, err)
	}
}

func op(o any) *etcdpb.RequestOp {
	switch o := o.(type) {
	case *etcdpb.PutRequest:
		return &etcdpb.RequestOp{Request: &etcdpb.RequestOp_RequestPut{RequestPut: o}}
	case *etcdpb.RangeRequest:
		return &etcdpb.RequestOp{Request: &etcdpb.RequestOp_RequestRange{RequestRange: o}}
	case *etcdpb.DeleteRangeRequest:
		return &etcdpb.RequestOp{Request: &etcdpb.RequestOp_RequestDeleteRange{RequestDeleteRange: o}}
	case *etcdpb.TxnRequest:
		return &etcdpb.RequestOp{Request: &etcdpb.RequestOp_RequestTxn{RequestTxn: o}}
	}
	panic(o)
}

// TestTxnResponses: a branch's ops before its write see the state before,
// those after it the state after; prev_kv and deletes are answered.
func TestTxnResponses(t *testing.T) {
	c := etcdpb.NewKVClient(serve(t, clientapitest.New()))
	ctx := context.Background()
	first := put(t, c, "k", "a")
	r, err := c.Txn(ctx, &etcdpb.TxnRequest{
		Compare: []*etcdpb.Compare{{Key: []byte("k"), Target: etcdpb.Compare_MOD, TargetUnion: &etcdpb.Compare_ModRevision{ModRevision: first.Header.Revision}}},
		Success: []*etcdpb.RequestOp{op(&etcdpb.RangeRequest{Key: []byte("k")}), op(&etcdpb.PutRequest{Key: []byte("k"), Value: []byte("b"), PrevKv: true}), op(&etcdpb.RangeRequest{Key: []byte("k")})},
	})
	if err != nil || !r.Succeeded || len(r.Responses) != 3 {
		t.Fatalf("%v %v", r, err)
	}
	before, after := r.Responses[0].GetResponseRange().Kvs[0], r.Responses[2].GetResponseRange().Kvs[0]
	if string(before.Value) != "a" || string(after.Value) != "b" || after.ModRevision != r.Header.Revision ||
		after.CreateRevision != first.Header.Revision || after.Version != 2 || string(r.Responses[1].GetResponsePut().PrevKv.Value) != "a" {
		t.Fatalf("before %v, after %v, header %v", before, after, r.Header)
	}
	d, err := c.Txn(ctx, &etcdpb.TxnRequest{Failure: nil, Success: []*etcdpb.RequestOp{op(&etcdpb.DeleteRangeRequest{Key: []byte("k"), PrevKv: true}), op(&etcdpb.RangeRequest{Key: []byte("k")})}})
	if err != nil || d.Responses[0].GetResponseDeleteRange().Deleted != 1 || len(d.Responses[1].GetResponseRange().Kvs) != 0 {
		t.Fatalf("delete in a Txn: %v %v", d, err)
	}
}

// TestRefusals: what caspaxos does not serve is refused with a code and a
// message saying why, and nothing is applied.
func TestRefusals(t *testing.T) {
	b := clientapitest.New()
	conn := serve(t, b)
	c := etcdpb.NewKVClient(conn)
	ctx := context.Background()
	put(t, c, "a", "1")
	put(t, c, "b", "1")
	cmpA := []*etcdpb.Compare{{Key: []byte("a"), Target: etcdpb.Compare_VALUE, TargetUnion: &etcdpb.Compare_Value{Value: []byte("1")}}}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		says string
	}{
		{"txn over two keys", func() error {
			_, err := c.Txn(ctx, &etcdpb.TxnRequest{Compare: cmpA, Success: []*etcdpb.RequestOp{op(&etcdpb.PutRequest{Key: []byte("b"), Value: []byte("2")})}})
			return err
		}, codes.InvalidArgument, "one key"},
		{"txn with a range", func() error {
			_, err := c.Txn(ctx, &etcdpb.TxnRequest{Compare: cmpA, Success: []*etcdpb.RequestOp{op(&etcdpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})}})
			return err
		}, codes.InvalidArgument, "one key"},
		{"nested txn", func() error {
			_, err := c.Txn(ctx, &etcdpb.TxnRequest{Compare: cmpA, Success: []*etcdpb.RequestOp{op(&etcdpb.TxnRequest{})}})
			return err
		}, codes.InvalidArgument, "nested"},
		{"two writes", func() error {
			_, err := c.Txn(ctx, &etcdpb.TxnRequest{Success: []*etcdpb.RequestOp{op(&etcdpb.PutRequest{Key: []byte("a")}), op(&etcdpb.DeleteRangeRequest{Key: []byte("a")})}})
			return err
		}, codes.InvalidArgument, "duplicate key"},
		{"range at a revision", func() error {
			_, err := c.Range(ctx, &etcdpb.RangeRequest{Key: []byte("a"), Revision: 3})
			return err
		}, codes.Unimplemented, "no history"},
		{"put with a negative lease", func() error {
			_, err := c.Put(ctx, &etcdpb.PutRequest{Key: []byte("a"), Value: []byte("2"), Lease: -5})
			return err
		}, codes.InvalidArgument, "a lease ID is positive"},
		{"empty key", func() error {
			_, err := c.Put(ctx, &etcdpb.PutRequest{Value: []byte("2")})
			return err
		}, codes.InvalidArgument, "key is not provided"},
		{"reserved key", func() error {
			_, err := c.Put(ctx, &etcdpb.PutRequest{Key: []byte("\x00auth"), Value: []byte("2")})
			return err
		}, codes.InvalidArgument, "reserved"},
		{"compact", func() error {
			return conn.Invoke(ctx, "/etcdserverpb.KV/Compact", &emptypb.Empty{}, &emptypb.Empty{})
		}, codes.Unimplemented, "no history"},
		{"watch", func() error {
			s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/etcdserverpb.Watch/Watch")
			if err != nil {
				return err
			}
			_ = s.SendMsg(&emptypb.Empty{})
			return s.RecvMsg(&emptypb.Empty{})
		}, codes.Unimplemented, "serves no watches"},
		{"lease checkpoint", func() error {
			return conn.Invoke(ctx, "/etcdserverpb.Lease/LeaseCheckpoint", &emptypb.Empty{}, &emptypb.Empty{})
		}, codes.Unimplemented, "nothing to checkpoint"},
		{"snapshot", func() error {
			return conn.Invoke(ctx, "/etcdserverpb.Maintenance/Snapshot", &emptypb.Empty{}, &emptypb.Empty{})
		}, codes.Unimplemented, "data directory"},
		{"member add", func() error {
			return conn.Invoke(ctx, "/etcdserverpb.Cluster/MemberAdd", &emptypb.Empty{}, &emptypb.Empty{})
		}, codes.Unimplemented, "caspaxos members add"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want code %v saying %q", err, tc.code, tc.says)
			}
		})
	}
	for _, k := range []string{"a", "b"} {
		r, err := c.Range(ctx, &etcdpb.RangeRequest{Key: []byte(k)})
		if err != nil || string(r.Kvs[0].Value) != "1" {
			t.Fatalf("%s after the refusals: %v %v", k, r, err)
		}
	}
}

// TestDeleteRange: one key, a prefix key by key with prev_kv, and nothing
// outside it.
func TestDeleteRange(t *testing.T) {
	c := etcdpb.NewKVClient(serve(t, clientapitest.New()))
	ctx := context.Background()
	for _, k := range []string{"d/1", "d/2", "d/3", "d", "e"} {
		put(t, c, k, "v"+k)
	}
	one, err := c.DeleteRange(ctx, &etcdpb.DeleteRangeRequest{Key: []byte("d")})
	if err != nil || one.Deleted != 1 {
		t.Fatalf("%v %v", one, err)
	}
	none, err := c.DeleteRange(ctx, &etcdpb.DeleteRangeRequest{Key: []byte("d")})
	if err != nil || none.Deleted != 0 || none.Header.Revision != one.Header.Revision {
		t.Fatalf("deleting it again: %v %v", none, err)
	}
	r, err := c.DeleteRange(ctx, &etcdpb.DeleteRangeRequest{Key: []byte("d/"), RangeEnd: prefixEnd("d/"), PrevKv: true})
	if err != nil || r.Deleted != 3 || len(r.PrevKvs) != 3 || string(r.PrevKvs[2].Value) != "vd/3" {
		t.Fatalf("%v %v", r, err)
	}
	left, err := c.Range(ctx, &etcdpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil || left.Count != 1 || string(left.Kvs[0].Key) != "e" {
		t.Fatalf("left: %v %v", left, err)
	}
}

// TestTxnRacingComparesOneWins: two Txns whose compares both saw the
// same state, and whose writes are both on their way, cannot both
// succeed: the write of each applies only to the state its compares saw
// (a plain put after the compare would let both through).
func TestTxnRacingComparesOneWins(t *testing.T) {
	b := clientapitest.New()
	c := etcdpb.NewKVClient(serve(t, b))
	ctx := context.Background()
	put(t, c, "n", "0")
	seen, release := b.HoldWrites()
	txn := &etcdpb.TxnRequest{
		Compare: []*etcdpb.Compare{{Key: []byte("n"), Target: etcdpb.Compare_VALUE, TargetUnion: &etcdpb.Compare_Value{Value: []byte("0")}}},
		Success: []*etcdpb.RequestOp{op(&etcdpb.PutRequest{Key: []byte("n"), Value: []byte("1")})},
	}
	results := make(chan *etcdpb.TxnResponse, 2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			r, err := c.Txn(ctx, txn)
			results <- r
			errs <- err
		}()
	}
	<-seen // both compares held "0" true and both writes are waiting
	<-seen
	release()
	won := 0
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if (<-results).Succeeded {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of two Txns on the same compared state succeeded, want 1", won)
	}
}
