package clientapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

func lockServer(t *testing.T) *httptest.Server {
	b := clientapitest.New()
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, Watches: b}, b))
	t.Cleanup(srv.Close)
	for _, id := range []string{"2a", "2b"} {
		checkHTTP(t, srv.URL, httpCase{name: "grant " + id, method: "POST", path: "/v1/lease?ttl=1m&id=" + id, status: 200})
	}
	return srv
}

// TestHTTPLocks: acquire, show, refuse and release a lock over HTTP; the
// tokens of successive holders rise; bad requests are refused.
func TestHTTPLocks(t *testing.T) {
	srv := lockServer(t)
	for _, tc := range []httpCase{
		{name: "show free", method: "GET", path: "/v1/lock/res", status: 200, want: `{"name":"res","token":0}`},
		{name: "acquire", method: "POST", path: "/v1/lock/res?lease=2a&owner=me", status: 200, want: `{"name":"res","token":1,"holder":"2a","owner":"me"}`},
		{name: "acquire again by the holder", method: "POST", path: "/v1/lock/res?lease=2a&owner=me", status: 200, want: `"token":2`},
		{name: "show held", method: "GET", path: "/v1/lock/res", status: 200, want: `"token":2,"holder":"2a"`},
		{name: "locked at the wait's end", method: "POST", path: "/v1/lock/res?lease=2b&wait=30ms", status: 409, code: clientapi.CodeLocked},
		{name: "release by another", method: "DELETE", path: "/v1/lock/res?lease=2b", status: 409, code: clientapi.CodeNotLockHolder},
		{name: "release", method: "DELETE", path: "/v1/lock/res?lease=2a", status: 200, want: `{"name":"res","token":3}`},
		{name: "release again", method: "DELETE", path: "/v1/lock/res?lease=2a", status: 409, code: clientapi.CodeNotLockHolder},
		{name: "acquire by the next", method: "POST", path: "/v1/lock/res?lease=2b&wait=1s", status: 200, want: `"token":4,"holder":"2b"`},
		{name: "acquire by a dead lease", method: "POST", path: "/v1/lock/other?lease=99", status: 404, code: clientapi.CodeLeaseNotFound},
		{name: "no lease", method: "POST", path: "/v1/lock/res", status: 400, code: clientapi.CodeBadRequest},
		{name: "lease 0", method: "DELETE", path: "/v1/lock/res?lease=0", status: 400, code: clientapi.CodeBadRequest},
		{name: "lock delay too long", method: "POST", path: "/v1/lock/res?lease=2a&lock_delay=2m", status: 400, code: clientapi.CodeBadRequest},
		{name: "lock delay malformed", method: "POST", path: "/v1/lock/res?lease=2a&lock_delay=x", status: 400, code: clientapi.CodeBadRequest},
		{name: "unknown parameter", method: "GET", path: "/v1/lock/res?lease=2a", status: 400, code: clientapi.CodeBadRequest},
		{name: "empty name", method: "GET", path: "/v1/lock/", status: 400, code: clientapi.CodeBadRequest},
		{name: "reserved name", method: "GET", path: "/v1/lock/%00x", status: 400, code: clientapi.CodeBadRequest},
		{name: "the register is out of the kv routes' reach", method: "GET", path: "/v1/kv/%00lock/res", status: 400, code: clientapi.CodeBadRequest},
	} {
		checkHTTP(t, srv.URL, tc)
	}
}

// TestHTTPLockWaiter: an acquire waiting on a held lock answers once the
// holder releases it, with a higher token.
func TestHTTPLockWaiter(t *testing.T) {
	srv := lockServer(t)
	checkHTTP(t, srv.URL, httpCase{name: "acquire", method: "POST", path: "/v1/lock/res?lease=2a", status: 200, want: `"token":1`})
	got := make(chan clientapi.LockAnswer, 1)
	go func() {
		var a clientapi.LockAnswer
		resp, err := srv.Client().Post(srv.URL+"/v1/lock/res?lease=2b&wait=10s", "", nil)
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
		}
		got <- a
	}()
	checkHTTP(t, srv.URL, httpCase{name: "release", method: "DELETE", path: "/v1/lock/res?lease=2a", status: 200})
	if a := <-got; a.Holder != "2b" || a.Token <= 2 {
		t.Fatalf("the waiter got %+v; want held by 2b at a token above the release's 2", a)
	}
}

// TestHTTPElection: campaign, proclaim, observe and resign.
func TestHTTPElection(t *testing.T) {
	srv := lockServer(t)
	for _, tc := range []httpCase{
		{name: "campaign", method: "POST", path: "/v1/election/e?lease=2a", body: "host-a:80", status: 200, want: `"holder":"2a","value":"host-a:80"`},
		{name: "leader", method: "GET", path: "/v1/election/e", status: 200, want: `"token":1,"holder":"2a","value":"host-a:80"`},
		{name: "proclaim", method: "PUT", path: "/v1/election/e?lease=2a", body: "host-a:81", status: 200, want: `"token":2,"holder":"2a","value":"host-a:81"`},
		{name: "proclaim by another", method: "PUT", path: "/v1/election/e?lease=2b", body: "x", status: 409, code: clientapi.CodeNotLockHolder},
		{name: "campaign lost at the wait's end", method: "POST", path: "/v1/election/e?lease=2b&wait=30ms", body: "host-b:80", status: 409, code: clientapi.CodeLocked},
		{name: "observe: no change within the wait", method: "GET", path: "/v1/election/e?wait=30ms&version=2", status: 200, want: `"token":2`},
		{name: "observe: a version already passed", method: "GET", path: "/v1/election/e?wait=10s&version=1", status: 200, want: `"token":2`},
		{name: "resign", method: "DELETE", path: "/v1/election/e?lease=2a", status: 200, want: `"token":3}`},
		{name: "proposal too large", method: "POST", path: "/v1/election/big?lease=2a", body: strings.Repeat("x", 2<<20), status: 413, code: clientapi.CodeValueTooLarge},
		{name: "campaign after", method: "POST", path: "/v1/election/e?lease=2b", body: "host-b:80", status: 200, want: `"token":4,"holder":"2b","value":"host-b:80"`},
	} {
		checkHTTP(t, srv.URL, tc)
	}
	// Observe wakes on a change.
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/v1/election/e?wait=10s&version=4")
		var a clientapi.LockAnswer
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
		}
		got <- a.Value
	}()
	checkHTTP(t, srv.URL, httpCase{name: "proclaim", method: "PUT", path: "/v1/election/e?lease=2b", body: "host-b:81", status: 200})
	if v := <-got; v != "host-b:81" {
		t.Fatalf("observe saw %q, want the proclaimed host-b:81", v)
	}
}

// TestHTTPLockAuth: with auth on, a lock NAME is guarded as the key NAME:
// a user with readwrite on app/ locks app/x, and is refused other locks.
func TestHTTPLockAuth(t *testing.T) {
	ctx := context.Background()
	b := localBackend{clientapitest.New()}
	g, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "alice", "pw"), g.AddRole(ctx, "app"),
		g.GrantPerm(ctx, "app", auth.Grant{Perm: auth.PermReadWrite, Key: "app/", Prefix: true}),
		g.GrantRole(ctx, "alice", "app"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(0x2a), Delta: 60_000}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, Guard: g, Watches: b}, b))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/auth/login", "application/json", strings.NewReader(`{"user":"alice","password":"pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&login); err != nil || login.Token == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	alice := map[string]string{"Authorization": "Bearer " + login.Token}
	for _, tc := range []httpCase{
		{name: "acquire app/x", method: "POST", path: "/v1/lock/app/x?lease=2a", header: alice, status: 200, want: `"holder":"2a"`},
		{name: "show app/x", method: "GET", path: "/v1/lock/app/x", header: alice, status: 200, want: `"holder":"2a"`},
		{name: "acquire other", method: "POST", path: "/v1/lock/other?lease=2a&wait=10ms", header: alice, status: 403, code: clientapi.CodePermissionDenied},
		{name: "show other", method: "GET", path: "/v1/lock/other", header: alice, status: 403, code: clientapi.CodePermissionDenied},
		{name: "campaign other", method: "POST", path: "/v1/election/other?lease=2a", header: alice, status: 403, code: clientapi.CodePermissionDenied},
		{name: "anonymous", method: "GET", path: "/v1/lock/app/x", status: 401, code: clientapi.CodeUnauthenticated},
		{name: "release app/x", method: "DELETE", path: "/v1/lock/app/x?lease=2a", header: alice, status: 200},
	} {
		checkHTTP(t, srv.URL, tc)
	}
}
