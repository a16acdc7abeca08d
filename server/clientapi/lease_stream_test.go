package clientapi_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestLeaseKeepAliveStream: over one stream, a live lease is renewed
// (its renewal time moves on), a revoked one, an absent one and ID 0 are
// answered with errors naming them, and the stream goes on after them;
// with auth on, each lease is checked as the unary call checks it (a
// user with write on one lease's key renews it and is refused another's
// on the same stream), and a stream without credentials is refused.
func TestLeaseKeepAliveStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := localBackend{clientapitest.New()}
	g, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "alice", "pw"), g.AddRole(ctx, "all"),
		g.GrantPerm(ctx, "all", auth.Grant{Perm: auth.PermReadWrite, Key: "app/", Prefix: true}),
		g.GrantPerm(ctx, "all", auth.Grant{Perm: auth.PermWrite, Key: kv.LeaseKey(0x2a)}),
		g.GrantRole(ctx, "alice", "all"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := grpc.NewServer()
	clientapi.RegisterGRPC(s, clientapi.GRPCConfig{Limits: kv.DefaultLimits, Guard: g}, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc := caspaxospb.NewLeaseClient(conn)
	as := func(user string) context.Context {
		tok, _, err := g.Login(ctx, user, "pw")
		if err != nil {
			t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	root := as(auth.RootUser)
	live, err := lc.LeaseGrant(root, &caspaxospb.LeaseGrantRequest{TtlMs: 10000, Id: 0x2a})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.LeaseGrant(root, &caspaxospb.LeaseGrantRequest{TtlMs: 10000, Id: 0x2b}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.LeaseRevoke(root, &caspaxospb.LeaseIDRequest{Id: 0x2b}); err != nil {
		t.Fatal(err)
	}

	// exchange sends ids on st and returns the answers by lease.
	exchange := func(st caspaxospb.Lease_LeaseKeepAlivesClient, ids ...uint64) map[uint64]*caspaxospb.LeaseKeepAliveResponse {
		t.Helper()
		for _, id := range ids {
			if err := st.Send(&caspaxospb.LeaseKeepAliveRequest{Id: id}); err != nil {
				t.Fatal(err)
			}
		}
		out := map[uint64]*caspaxospb.LeaseKeepAliveResponse{}
		for range ids {
			r, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out[r.GetId()] = r
		}
		return out
	}
	st, err := lc.LeaseKeepAlives(root)
	if err != nil {
		t.Fatal(err)
	}
	// The renewal time moves on past the grant's (ms resolution).
	for at := time.Now().Add(5 * time.Millisecond); time.Now().Before(at); {
		<-time.After(time.Until(at))
	}
	got := exchange(st, 0x2a, 0x2b, 0x99, 0)
	if r := got[0x2a]; r.GetError() != nil || r.GetLease().GetState() != "live" || r.GetLease().GetRenewedUnixMs() <= live.GetRenewedUnixMs() {
		t.Fatalf("live lease: %v (granted %v)", r, live)
	}
	for id, code := range map[uint64]string{0x2b: clientapi.CodeLeaseNotFound, 0x99: clientapi.CodeLeaseNotFound, 0: clientapi.CodeBadRequest} {
		if r := got[id]; r.GetError().GetCode() != code || r.GetLease() != nil || r.GetMessage() == "" {
			t.Fatalf("lease %x: %v, want %s", id, r, code)
		}
	}
	// The stream goes on after the errors.
	if r := exchange(st, 0x2a)[0x2a]; r.GetError() != nil {
		t.Fatalf("renewal after the errors: %v", r)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}

	// alice may write lease 2a's key, not 2c's: on one stream, one lease
	// is renewed, the other refused.
	if _, err := lc.LeaseGrant(root, &caspaxospb.LeaseGrantRequest{TtlMs: 10000, Id: 0x2c}); err != nil {
		t.Fatal(err)
	}
	st, err = lc.LeaseKeepAlives(as("alice"))
	if err != nil {
		t.Fatal(err)
	}
	got = exchange(st, 0x2a, 0x2c)
	if r := got[0x2a]; r.GetError() != nil {
		t.Fatalf("alice's renewal of 2a: %v", r)
	}
	if r := got[0x2c]; r.GetError().GetCode() != clientapi.CodePermissionDenied {
		t.Fatalf("alice's renewal of 2c: %v, want permission_denied", r)
	}
	// No credentials: the stream is refused when it opens.
	st, err = lc.LeaseKeepAlives(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	if _, info := errorInfo(t, err); info.GetCode() != clientapi.CodeUnauthenticated {
		t.Fatalf("stream without credentials: %v", err)
	}
}
