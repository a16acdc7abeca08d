package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// authHTTP sends one request with an optional bearer token and returns
// the status and body.
func authHTTP(t *testing.T, method, url, token, contentType, body string, header ...string) (int, string) {
	t.Helper()
	r := mustRequest(t, method, url, body)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustAuthHTTP(t *testing.T, method, url, token, body string) string {
	t.Helper()
	code, out := authHTTP(t, method, url, token, "application/json", body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, code, out)
	}
	return out
}

func login(t *testing.T, base, user, password string) string {
	t.Helper()
	var r struct{ Token string }
	out := mustAuthHTTP(t, "POST", base+"/v1/auth/login", "", `{"user":"`+user+`","password":"`+password+`"}`)
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Token == "" {
		t.Fatalf("login %s: %s", user, out)
	}
	return r.Token
}

// setupAuth makes root (admin), alice (readwrite on the prefix "app/"),
// reader (read on "app/") and enables auth, all over HTTP.
func setupAuth(t *testing.T, base string) {
	t.Helper()
	for _, s := range []struct{ method, path, body string }{
		{"POST", "/v1/auth/users", `{"name":"root","password":"rootpw"}`},
		{"POST", "/v1/auth/users", `{"name":"alice","password":"alicepw"}`},
		{"POST", "/v1/auth/users", `{"name":"reader","password":"readerpw"}`},
		{"POST", "/v1/auth/roles", `{"name":"app"}`},
		{"POST", "/v1/auth/roles", `{"name":"ro"}`},
		{"POST", "/v1/auth/roles/app/grant", `{"perm":"readwrite","key":"app/","prefix":true}`},
		{"POST", "/v1/auth/roles/ro/grant", `{"perm":"read","key":"app/","prefix":true}`},
		{"POST", "/v1/auth/users/alice/roles", `{"role":"app"}`},
		{"POST", "/v1/auth/users/reader/roles", `{"role":"ro"}`},
		{"POST", "/v1/auth/enable", ``},
	} {
		mustAuthHTTP(t, s.method, base+s.path, "", s.body)
	}
}

// authState reads the cluster's auth state past the client API.
func authState(t *testing.T, d *Daemon) auth.State {
	t.Helper()
	reg, err := d.node.Do(context.Background(), kv.Op{Kind: kv.OpGet, Key: auth.StateKey})
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.DecodeState(reg.Value)
	if err != nil || len(s.SigningKey) == 0 {
		t.Fatalf("auth state: %+v, %v", s, err)
	}
	return s
}

// expiredToken signs a token for user that expired a minute ago, with the
// cluster's own key.
func expiredToken(t *testing.T, d *Daemon, user string) string {
	t.Helper()
	s := authState(t, d)
	return auth.SignToken(s.SigningKey, user, s.Users[user].Generation, time.Now().Add(-time.Minute))
}

// forgedToken makes the token a forger would: for user, under the user's
// current generation, valid for an hour, but signed with a key of its own
// rather than the cluster's.
func forgedToken(t *testing.T, d *Daemon, user string) string {
	t.Helper()
	s := authState(t, d)
	key := make([]byte, len(s.SigningKey))
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return auth.SignToken(key, user, s.Users[user].Generation, time.Now().Add(time.Hour))
}

// TestAuthRejectionMatrix: with auth enabled, each refused request over
// HTTP and gRPC gets its defined error and changes nothing; the granted
// ones work, and an admin adds a member.
func TestAuthRejectionMatrix(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	base := "http://" + c.cfgs[0].ClientAddr
	// Before auth is enabled everything is open, as before.
	if code, out := authHTTP(t, "PUT", base+"/v1/kv/app/x", "", "", "v1"); code != http.StatusOK {
		t.Fatalf("put before auth: %d %s", code, out)
	}
	setupAuth(t, base)
	root, alice, reader := login(t, base, "root", "rootpw"), login(t, base, "alice", "alicepw"), login(t, base, "reader", "readerpw")
	expired, forged := expiredToken(t, c.daemons[0], "alice"), forgedToken(t, c.daemons[0], "root")
	mustAuthHTTP(t, "PUT", base+"/v1/kv/app/x", alice, "v2")
	membersBefore := mustAuthHTTP(t, "GET", base+"/v1/members", "", "")

	// unchanged checks, after each refusal, that no key and no member changed.
	unchanged := func(desc string) {
		t.Helper()
		if out := mustAuthHTTP(t, "GET", base+"/v1/kv/app/x", root, ""); out != "v2" {
			t.Fatalf("%s: app/x is %q, want v2", desc, out)
		}
		for _, k := range []string{"app0", "other"} {
			if code, out := authHTTP(t, "GET", base+"/v1/kv/"+k, root, "", ""); code != http.StatusNotFound {
				t.Fatalf("%s: %s exists: %d %s", desc, k, code, out)
			}
		}
		if out := mustAuthHTTP(t, "GET", base+"/v1/members", "", ""); out != membersBefore {
			t.Fatalf("%s: members changed: %s", desc, out)
		}
	}
	joinAddr := "127.0.0.1:1" // refused before anyone dials it
	httpCases := []struct {
		name, method, path, token, ct, body string
		header                              []string
		status                              int
		code                                string
	}{
		{"no token", "PUT", "/v1/kv/app/x", "", "", "v3", nil, 401, kv.CodeUnauthenticated},
		{"no token, read", "GET", "/v1/kv/app/x", "", "", "", nil, 401, kv.CodeUnauthenticated},
		{"expired token", "PUT", "/v1/kv/app/x", expired, "", "v3", nil, 401, kv.CodeUnauthenticated},
		{"forged token", "PUT", "/v1/kv/app/x", forged, "", "v3", nil, 401, kv.CodeUnauthenticated},
		{"wrong password", "POST", "/v1/auth/login", "", "application/json", `{"user":"alice","password":"nope"}`, nil, 401, kv.CodeUnauthenticated},
		{"unknown user", "POST", "/v1/auth/login", "", "application/json", `{"user":"mallory","password":"x"}`, nil, 401, kv.CodeUnauthenticated},
		{"read-only user writes", "PUT", "/v1/kv/app/x", reader, "", "v3", nil, 403, kv.CodePermissionDenied},
		{"read-only user deletes", "DELETE", "/v1/kv/app/x", reader, "", "", nil, 403, kv.CodePermissionDenied},
		{"read outside the grant", "GET", "/v1/kv/other", reader, "", "", nil, 403, kv.CodePermissionDenied},
		{"prefix next to the granted", "PUT", "/v1/kv/app0", alice, "", "v", nil, 403, kv.CodePermissionDenied},
		{"incr next to the granted", "POST", "/v1/kv/app0?incr=1", alice, "", "", nil, 403, kv.CodePermissionDenied},
		{"membership change", "POST", "/v1/members", alice, "application/octet-stream", "n9=" + joinAddr, nil, 403, kv.CodePermissionDenied},
		{"member removal", "DELETE", "/v1/members/n3", alice, "", "", nil, 403, kv.CodePermissionDenied},
		{"release", "POST", "/v1/members/release", alice, "application/octet-stream", "", nil, 403, kv.CodePermissionDenied},
		{"user management", "POST", "/v1/auth/users", alice, "application/json", `{"name":"eve","password":"x"}`, nil, 403, kv.CodePermissionDenied},
		{"grant to itself", "POST", "/v1/auth/roles/app/grant", alice, "application/json", `{"perm":"readwrite","prefix":true}`, nil, 403, kv.CodePermissionDenied},
		{"other user's password", "POST", "/v1/auth/users/root/password", alice, "application/json", `{"password":"mine"}`, nil, 403, kv.CodePermissionDenied},
		{"own password without the current one", "POST", "/v1/auth/users/alice/password", alice, "application/json", `{"password":"mine"}`, nil, 403, kv.CodePermissionDenied},
		{"own password, wrong current one", "POST", "/v1/auth/users/alice/password", alice, "application/json", `{"password":"mine","current_password":"guess"}`, nil, 403, kv.CodePermissionDenied},
		{"root's own password without the current one", "POST", "/v1/auth/users/root/password", root, "application/json", `{"password":"mine"}`, nil, 403, kv.CodePermissionDenied},
		{"disable", "POST", "/v1/auth/disable", alice, "application/json", ``, nil, 403, kv.CodePermissionDenied},
		{"reserved key, even for root", "GET", "/v1/kv/%00auth/state", root, "", "", nil, 400, kv.CodeBadRequest},
		{"reserved key write", "PUT", "/v1/kv/%00auth/state", root, "", "{}", nil, 400, kv.CodeBadRequest},
		{"CSRF: text/plain POST to /v1/members", "POST", "/v1/members", root, "text/plain", "n9=" + joinAddr, nil, 403, kv.CodePermissionDenied},
		{"CSRF: form POST to /v1/members/release", "POST", "/v1/members/release", root, "application/x-www-form-urlencoded", "", nil, 403, kv.CodePermissionDenied},
		{"CSRF: cross-origin put", "PUT", "/v1/kv/app/x", root, "", "v3", []string{"Origin", "http://evil.example"}, 403, kv.CodePermissionDenied},
		{"CSRF: cross-site incr", "POST", "/v1/kv/app0?incr=1", root, "text/plain", "", []string{"Sec-Fetch-Site", "cross-site"}, 403, kv.CodePermissionDenied},
	}
	for _, tc := range httpCases {
		code, out := authHTTP(t, tc.method, base+tc.path, tc.token, tc.ct, tc.body, tc.header...)
		if code != tc.status || !strings.Contains(out, `"code":"`+tc.code+`"`) {
			t.Errorf("HTTP %s (%s %s): %d %s, want %d %s", tc.name, tc.method, tc.path, code, out, tc.status, tc.code)
		}
		unchanged("HTTP " + tc.name)
	}

	conn, err := grpc.NewClient(c.cfgs[0].ClientAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kvc, cl, ac := caspaxospb.NewKVClient(conn), caspaxospb.NewClusterClient(conn), caspaxospb.NewAuthClient(conn)
	with := func(token string) context.Context {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return ctx
	}
	put := func(token, key string) error {
		_, err := kvc.Put(with(token), &caspaxospb.PutRequest{Key: []byte(key), Value: []byte("v3")})
		return err
	}
	grpcCases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"no token", func() error { return put("", "app/x") }, codes.Unauthenticated},
		{"expired token", func() error { return put(expired, "app/x") }, codes.Unauthenticated},
		{"forged token", func() error { return put(forged, "app/x") }, codes.Unauthenticated},
		{"wrong password", func() error {
			_, err := ac.Login(context.Background(), &caspaxospb.LoginRequest{User: "alice", Password: "nope"})
			return err
		}, codes.Unauthenticated},
		{"unknown user", func() error {
			_, err := ac.Login(context.Background(), &caspaxospb.LoginRequest{User: "mallory", Password: "x"})
			return err
		}, codes.Unauthenticated},
		{"read-only user writes", func() error { return put(reader, "app/x") }, codes.PermissionDenied},
		{"read-only user deletes", func() error {
			_, err := kvc.Delete(with(reader), &caspaxospb.DeleteRequest{Key: []byte("app/x")})
			return err
		}, codes.PermissionDenied},
		{"read outside the grant", func() error {
			_, err := kvc.Get(with(reader), &caspaxospb.GetRequest{Key: []byte("other")})
			return err
		}, codes.PermissionDenied},
		{"prefix next to the granted", func() error { return put(alice, "app0") }, codes.PermissionDenied},
		{"membership change", func() error {
			_, err := cl.MemberAdd(with(alice), &caspaxospb.MemberAddRequest{Name: "n9", PeerAddr: joinAddr})
			return err
		}, codes.PermissionDenied},
		{"release", func() error {
			_, err := cl.MemberRelease(with(alice), &caspaxospb.MemberReleaseRequest{})
			return err
		}, codes.PermissionDenied},
		{"user management", func() error {
			_, err := ac.UserAdd(with(alice), &caspaxospb.UserRequest{Name: "eve", Password: "x"})
			return err
		}, codes.PermissionDenied},
		{"own password without the current one", func() error {
			_, err := ac.UserPasswd(with(alice), &caspaxospb.UserRequest{Name: "alice", Password: "mine"})
			return err
		}, codes.PermissionDenied},
		{"own password, wrong current one", func() error {
			_, err := ac.UserPasswd(with(alice), &caspaxospb.UserRequest{Name: "alice", Password: "mine", CurrentPassword: "guess"})
			return err
		}, codes.PermissionDenied},
		{"reserved key", func() error { return put(root, auth.StateKey) }, codes.InvalidArgument},
		{"batch without token", func() error { return batchOp(with(""), kvc, "app/x") }, codes.Unauthenticated},
		{"batch op next to the granted", func() error { return batchOp(with(alice), kvc, "app0") }, codes.PermissionDenied},
	}
	for _, tc := range grpcCases {
		err := tc.call()
		if status.Code(err) != tc.code {
			t.Errorf("gRPC %s: %v, want %v", tc.name, err, tc.code)
		}
		unchanged("gRPC " + tc.name)
	}

	// The happy path: alice through the Go client; root adds a member.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, err := client.New(client.Config{Endpoints: []string{c.cfgs[1].ClientAddr}, Username: "alice", Password: "alicepw"})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if _, err := ca.Put(ctx, "app/y", []byte("yes")); err != nil {
		t.Fatalf("alice puts app/y: %v", err)
	}
	if v, err := ca.Get(ctx, "app/y"); err != nil || string(v.Data) != "yes" {
		t.Fatalf("alice gets app/y: %+v, %v", v, err)
	}
	if _, err := ca.Put(ctx, "app0", []byte("no")); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("alice puts app0 through the Go client: %v", err)
	}
	bad, err := client.New(client.Config{Endpoints: []string{c.cfgs[1].ClientAddr}, Username: "alice", Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Get(ctx, "app/y"); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("Go client with a wrong password: %v", err)
	}
	unchanged("Go client")

	// A password change ends the user's tokens: alice changes her own
	// through the Go client (it sends the current one, and logs in with
	// the new one from then on); her earlier token is refused at once by
	// the node that changed it, and the old password no longer logs in.
	if err := ca.UserPasswd(ctx, "alice", "alicepw2"); err != nil {
		t.Fatalf("alice changes her own password: %v", err)
	}
	if code, out := authHTTP(t, "GET", "http://"+c.cfgs[1].ClientAddr+"/v1/kv/app/y", alice, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("alice's token after her password change: %d %s", code, out)
	}
	conn1, err := grpc.NewClient(c.cfgs[1].ClientAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn1.Close()
	if _, err := caspaxospb.NewKVClient(conn1).Put(with(alice), &caspaxospb.PutRequest{Key: []byte("app/y"), Value: []byte("stale")}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a gRPC put with alice's token after her password change: %v, want Unauthenticated", err)
	}
	if out := mustAuthHTTP(t, "GET", base+"/v1/kv/app/y", root, ""); out != "yes" {
		t.Fatalf("app/y after the refused put: %q, want yes", out)
	}
	if code, out := authHTTP(t, "POST", base+"/v1/auth/login", "", "application/json", `{"user":"alice","password":"alicepw"}`); code != http.StatusUnauthorized {
		t.Fatalf("login with alice's old password: %d %s", code, out)
	}
	if _, err := ca.Put(ctx, "app/y", []byte("again")); err != nil {
		t.Fatalf("alice puts app/y after her password change: %v", err)
	}
	// Root sets it back, with no current password: an admin's change of
	// another user's.
	mustAuthHTTP(t, "POST", base+"/v1/auth/users/alice/password", root, `{"password":"alicepw"}`)
	login(t, base, "alice", "alicepw")
	n4 := c.joiner(t, "n4", t.TempDir())
	if code, out := authHTTP(t, "POST", base+"/v1/members", root, "application/octet-stream", "n4="+c.cfgs[n4].PeerAddr); code != http.StatusOK || !strings.Contains(out, `"n4"`) {
		t.Fatalf("root adds n4: %d %s", code, out)
	}
}

// batchOp runs one PUT of key on a Batch stream and returns its refusal
// as a status error: the stream's, or the op's code.
func batchOp(ctx context.Context, kvc caspaxospb.KVClient, key string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := kvc.Batch(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&caspaxospb.BatchRequest{Ops: []*caspaxospb.Op{{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte(key), Value: []byte("v3")}}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	r, err := s.Recv()
	if err != nil {
		return err
	}
	_ = s.CloseSend()
	if e := r.GetResults()[0].GetError(); e.GetCode() == kv.CodePermissionDenied {
		return status.Error(codes.PermissionDenied, r.GetResults()[0].GetMessage())
	} else if e != nil {
		return status.Error(codes.Unknown, e.GetCode())
	}
	return nil
}

// TestAuthFailClosed: a node restarted amid a partition has not read the
// auth state since it started. With auth enabled it refuses what needs
// authorization (anonymous admin first among them) as no_quorum, saying
// why; with auth disabled at its last read (kept in its data directory)
// it still releases held nodes, which is meant for a degraded cluster.
func TestAuthFailClosed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		enable  bool
		status  int
		want    string
		grpcErr codes.Code
	}{
		{"auth enabled", true, http.StatusServiceUnavailable, `"code":"no_quorum"`, codes.Unavailable},
		{"auth never enabled", false, http.StatusOK, `{"releases":[{"name":"n1","released":false}]}`, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3)
			for _, cfg := range c.cfgs {
				waitHealthy(t, cfg.ClientAddr, http.StatusOK)
			}
			base := "http://" + c.cfgs[0].ClientAddr
			if tc.enable {
				setupAuth(t, base)
			} else {
				mustAuthHTTP(t, "PUT", base+"/v1/kv/app/x", "", "v1")
			}
			for i := range c.daemons {
				c.stop(i)
			}
			c.start(t, 0)
			waitHealthy(t, c.cfgs[0].ClientAddr, http.StatusServiceUnavailable)
			code, out := authHTTP(t, "POST", base+"/v1/members/release?force=true", "", "application/octet-stream", "n1")
			if code != tc.status || !strings.Contains(out, tc.want) {
				t.Fatalf("anonymous release: %d %s, want %d with %s", code, out, tc.status, tc.want)
			}
			if tc.enable && !strings.Contains(out, "auth state is unknown") {
				t.Errorf("the refusal does not say why: %s", out)
			}
			conn, err := grpc.NewClient(c.cfgs[0].ClientAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = caspaxospb.NewClusterClient(conn).MemberRelease(context.Background(), &caspaxospb.MemberReleaseRequest{Name: "n1", Force: true})
			if status.Code(err) != tc.grpcErr {
				t.Errorf("anonymous gRPC release: %v, want %v", err, tc.grpcErr)
			}
		})
	}
}

// TestCrossOriginRefusedWithAuthOff: with auth off, where every request is
// open, a web page still cannot change the cluster through a client port.
// The requests a page can send without a CORS preflight (a text/plain or
// form POST to /v1/members, /v1/members/release or /v1/auth/users, the one
// that would make root) and the writes a browser marks as another site's
// (Origin, Sec-Fetch-Site) are refused 403 permission_denied, and no
// member, key, user or auth setting changes. The same add and put from a
// client that is no browser pass: the refused requests were live ones.
func TestCrossOriginRefusedWithAuthOff(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	base := "http://" + c.cfgs[0].ClientAddr
	mustAuthHTTP(t, "PUT", base+"/v1/kv/app/x", "", "v1")
	n4 := c.joiner(t, "n4", t.TempDir())
	add := "n4=" + c.cfgs[n4].PeerAddr
	snapshot := func() []string {
		t.Helper()
		// The members by version, name and address (not reachability,
		// which a link's hiccup changes).
		var m struct {
			Version uint64 `json:"config_version"`
			Members []struct {
				Name     string `json:"name"`
				PeerAddr string `json:"peer_addr"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(mustAuthHTTP(t, "GET", base+"/v1/members", "", "")), &m); err != nil {
			t.Fatal(err)
		}
		out := []string{fmt.Sprintf("%+v", m)}
		for _, path := range []string{"/v1/auth/status", "/v1/auth/users", "/v1/kv/app/x"} {
			out = append(out, mustAuthHTTP(t, "GET", base+path, "", ""))
		}
		code, body := authHTTP(t, "GET", base+"/v1/kv/counter", "", "", "")
		return append(out, fmt.Sprint(code, body))
	}
	before := snapshot()
	if !strings.Contains(before[1], `"enabled":false`) {
		t.Fatalf("auth status before: %s, want disabled", before[1])
	}
	evil := []string{"Origin", "http://evil.example"}
	for _, tc := range []struct {
		name, method, path, ct, body string
		header                       []string
	}{
		{"text/plain POST to /v1/members", "POST", "/v1/members", "text/plain", add, nil},
		{"text/plain POST with a charset", "POST", "/v1/members", "text/plain; charset=utf-8", add, nil},
		{"form POST to /v1/members", "POST", "/v1/members", "application/x-www-form-urlencoded", add, nil},
		{"multipart POST to /v1/members", "POST", "/v1/members", "multipart/form-data; boundary=x", add, nil},
		{"cross-origin POST to /v1/members", "POST", "/v1/members", "application/octet-stream", add, evil},
		{"cross-origin member removal", "DELETE", "/v1/members/n3", "", "", evil},
		{"text/plain POST to /v1/members/release", "POST", "/v1/members/release", "text/plain", "", nil},
		{"text/plain POST making root", "POST", "/v1/auth/users", "text/plain", `{"name":"root","password":"evil"}`, nil},
		{"cross-origin auth enable", "POST", "/v1/auth/enable", "application/json", "", evil},
		{"cross-origin put", "PUT", "/v1/kv/app/x", "text/plain", "evil", evil},
		{"put from an opaque origin", "PUT", "/v1/kv/app/x", "text/plain", "evil", []string{"Origin", "null"}},
		{"cross-site put", "PUT", "/v1/kv/app/x", "text/plain", "evil", []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-origin incr", "POST", "/v1/kv/counter?incr=1", "text/plain", "", evil},
		{"cross-origin delete", "DELETE", "/v1/kv/app/x", "", "", evil},
	} {
		code, out := authHTTP(t, tc.method, base+tc.path, "", tc.ct, tc.body, tc.header...)
		if code != http.StatusForbidden || !strings.Contains(out, `"code":"`+kv.CodePermissionDenied+`"`) || !strings.Contains(out, "cross-origin") {
			t.Errorf("%s: %d %s, want 403 %s (cross-origin)", tc.name, code, out, kv.CodePermissionDenied)
		}
		if after := snapshot(); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s changed the cluster:\n%q\nwas\n%q", tc.name, after, before)
		}
	}
	// Not a browser's: the same put, with this node's own origin, and the
	// same add.
	if code, out := authHTTP(t, "PUT", base+"/v1/kv/app/x", "", "text/plain", "v2", "Origin", base); code != http.StatusOK {
		t.Fatalf("a same-origin put: %d %s", code, out)
	}
	if code, out := authHTTP(t, "POST", base+"/v1/members", "", "application/octet-stream", add); code != http.StatusOK || !strings.Contains(out, `"n4"`) {
		t.Fatalf("adding n4 without a browser's marks: %d %s", code, out)
	}
}
