package clientapi_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

func grpcClient(t *testing.T, b clientapi.Backend) (caspaxospb.KVClient, caspaxospb.ClusterClient) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	clientapi.RegisterGRPC(s, clientapi.GRPCConfig{Limits: kv.Limits{MaxKeyBytes: 8, MaxValueBytes: 8}}, b)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return caspaxospb.NewKVClient(conn), caspaxospb.NewClusterClient(conn)
}

// errorInfo returns the status code and the ErrorInfo detail of err.
func errorInfo(t *testing.T, err error) (codes.Code, *caspaxospb.ErrorInfo) {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*caspaxospb.ErrorInfo); ok {
			return st.Code(), info
		}
	}
	t.Fatalf("status %v carries no ErrorInfo", st)
	return 0, nil
}

func TestGRPCAPI(t *testing.T) {
	c, cl := grpcClient(t, clientapitest.New())
	ctx := context.Background()
	key := []byte("k")
	if _, err := c.Get(ctx, &caspaxospb.GetRequest{Key: key}); err == nil {
		t.Fatal("get of an absent key succeeded")
	} else if code, info := errorInfo(t, err); code != codes.NotFound || info.Code != clientapi.CodeNotFound {
		t.Fatalf("absent get: %v %v", code, info)
	}
	put, err := c.Put(ctx, &caspaxospb.PutRequest{Key: key, Value: []byte("v")})
	if err != nil || put.Version != 1 {
		t.Fatalf("put: %v %v", put, err)
	}
	stale := uint64(9)
	_, err = c.Put(ctx, &caspaxospb.PutRequest{Key: key, Value: []byte("w"), IfVersion: &stale})
	if code, info := errorInfo(t, err); code != codes.FailedPrecondition || info.Code != clientapi.CodeVersionMismatch || info.CurrentVersion != 1 {
		t.Fatalf("stale put: %v %v", code, info)
	}
	if r, err := c.CompareAndSwap(ctx, &caspaxospb.CompareAndSwapRequest{Key: key, Version: 1, Value: []byte("w")}); err != nil || r.Version != 2 {
		t.Fatalf("cas: %v %v", r, err)
	}
	if g, err := c.Get(ctx, &caspaxospb.GetRequest{Key: key}); err != nil || string(g.Value) != "w" || g.Version != 2 {
		t.Fatalf("get: %v %v", g, err)
	}
	if _, err := c.Increment(ctx, &caspaxospb.IncrementRequest{Key: key, Delta: 1}); err == nil {
		t.Fatal("increment of text succeeded")
	} else if _, info := errorInfo(t, err); info.Code != clientapi.CodeNotAnInteger {
		t.Fatalf("increment of text: %v", info)
	}
	if r, err := c.Increment(ctx, &caspaxospb.IncrementRequest{Key: []byte("n"), Delta: 3}); err != nil || r.Value != 3 {
		t.Fatalf("increment: %v %v", r, err)
	}
	if r, err := c.Delete(ctx, &caspaxospb.DeleteRequest{Key: key}); err != nil || r.Version != 3 {
		t.Fatalf("delete: %v %v", r, err)
	}
	if _, err := c.Put(ctx, &caspaxospb.PutRequest{Key: []byte("too-long-key"), Value: []byte("v")}); err == nil {
		t.Fatal("oversized key accepted")
	} else if code, info := errorInfo(t, err); code != codes.InvalidArgument || info.Code != clientapi.CodeKeyTooLarge {
		t.Fatalf("oversized key: %v %v", code, info)
	}
	if h, err := cl.Health(ctx, &caspaxospb.HealthRequest{}); err != nil || !h.Healthy {
		t.Fatalf("health: %v %v", h, err)
	}
	if m, err := cl.Members(ctx, &caspaxospb.MembersRequest{}); err != nil || len(m.Members) != 2 || m.Members[0].Name != "n1" {
		t.Fatalf("members: %v %v", m, err)
	}
}

func TestGRPCQuorumErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		info string
	}{
		{kv.ErrUnknownOutcome, codes.DeadlineExceeded, clientapi.CodeUnknownOutcome},
		{fmt.Errorf("wrapped: %w", kv.ErrNoSpace), codes.ResourceExhausted, clientapi.CodeNoSpace},
	} {
		b := clientapitest.New()
		b.SetFail(tc.err)
		c, _ := grpcClient(t, b)
		_, err := c.Put(context.Background(), &caspaxospb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		if code, info := errorInfo(t, err); code != tc.code || info.Code != tc.info {
			t.Fatalf("%s: %v %v", tc.info, code, info)
		}
	}
}

// TestGRPCLease: the unary writes carry their lease to the backend, and
// Get answers it.
func TestGRPCLease(t *testing.T) {
	c, _ := grpcClient(t, clientapitest.New())
	ctx := context.Background()
	lease := func(key string) uint64 {
		t.Helper()
		g, err := c.Get(ctx, &caspaxospb.GetRequest{Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		return g.GetLease()
	}
	if _, err := c.Put(ctx, &caspaxospb.PutRequest{Key: []byte("p"), Value: []byte("v"), Lease: 3}); err != nil || lease("p") != 3 {
		t.Fatalf("put with lease 3: %v, lease %d", err, lease("p"))
	}
	one := uint64(1)
	if _, err := c.Put(ctx, &caspaxospb.PutRequest{Key: []byte("p"), Value: []byte("v"), IfVersion: &one, Lease: 4}); err != nil || lease("p") != 4 {
		t.Fatalf("conditional put with lease 4: %v, lease %d", err, lease("p"))
	}
	if _, err := c.Create(ctx, &caspaxospb.CreateRequest{Key: []byte("c"), Value: []byte("v"), Lease: 5}); err != nil || lease("c") != 5 {
		t.Fatalf("create with lease 5: %v, lease %d", err, lease("c"))
	}
	if _, err := c.CompareAndSwap(ctx, &caspaxospb.CompareAndSwapRequest{Key: []byte("c"), Version: 1, Value: []byte("w"), Lease: 6}); err != nil || lease("c") != 6 {
		t.Fatalf("cas with lease 6: %v, lease %d", err, lease("c"))
	}
	if _, err := c.Put(ctx, &caspaxospb.PutRequest{Key: []byte("c"), Value: []byte("v")}); err != nil || lease("c") != 0 {
		t.Fatalf("put without a lease: %v, lease %d", err, lease("c"))
	}
}
