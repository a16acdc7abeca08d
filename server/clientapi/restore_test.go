package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// POST /v1/restore writes each key at a version of at least min_version,
// or above its current one; it refuses bad bodies, reserved keys and the
// CSRF shapes of an admin request.
func TestHTTPRestore(t *testing.T) {
	json := map[string]string{"Content-Type": "application/json"}
	steps := []httpCase{
		{name: "put", method: "PUT", path: "/v1/kv/a", body: "old", status: 200, want: `{"version":1}`},
		{name: "restore", method: "POST", path: "/v1/restore", header: json, status: 200, want: `{"versions":[101,101]}`,
			body: `{"min_version":101,"items":[{"key":"YQ==","value":"bmV3"},{"key":"Yg==","value":""}]}`},
		{name: "restored value", method: "GET", path: "/v1/kv/a", status: 200, want: "new"},
		{name: "old cas refused", method: "PUT", path: "/v1/kv/a", body: "x", header: map[string]string{"If-Match": `"1"`}, status: 412, code: clientapi.CodeVersionMismatch, current: u64(101)},
		{name: "again rises", method: "POST", path: "/v1/restore", header: json, status: 200, want: `{"versions":[102]}`,
			body: `{"min_version":101,"items":[{"key":"YQ==","value":"bmV3"}]}`},
		{name: "no min_version", method: "POST", path: "/v1/restore", header: json, status: 400, code: clientapi.CodeBadRequest,
			body: `{"items":[{"key":"YQ==","value":"bmV3"}]}`},
		{name: "reserved key", method: "POST", path: "/v1/restore", header: json, status: 400, code: clientapi.CodeBadRequest,
			body: `{"min_version":5,"items":[{"key":"AGF1dGg=","value":""}]}`},
		{name: "empty key", method: "POST", path: "/v1/restore", header: json, status: 400, code: clientapi.CodeBadRequest,
			body: `{"min_version":5,"items":[{"key":"","value":""}]}`},
		{name: "value too large", method: "POST", path: "/v1/restore", header: json, status: 413, code: clientapi.CodeValueTooLarge,
			body: `{"min_version":5,"items":[{"key":"YQ==","value":"` + strings.Repeat("eHh4", 11) + `"}]}`},
		{name: "malformed", method: "POST", path: "/v1/restore", header: json, status: 400, code: clientapi.CodeBadRequest, body: `{"min_version":`},
		{name: "unknown query", method: "POST", path: "/v1/restore?x=1", header: json, status: 400, code: clientapi.CodeBadRequest, body: `{}`},
		{name: "text/plain (CSRF)", method: "POST", path: "/v1/restore", header: map[string]string{"Content-Type": "text/plain"}, status: 403, code: clientapi.CodePermissionDenied,
			body: `{"min_version":5,"items":[{"key":"YQ==","value":""}]}`},
		{name: "cross-origin", method: "POST", path: "/v1/restore", header: map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, status: 403, code: clientapi.CodePermissionDenied,
			body: `{"min_version":5,"items":[{"key":"YQ==","value":""}]}`},
	}
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.Limits{MaxKeyBytes: 32, MaxValueBytes: 32}}, clientapitest.New()))
	defer srv.Close()
	for _, tc := range steps {
		checkHTTP(t, srv.URL, tc)
	}
}

// With auth enabled, restore needs admin: a user with readwrite on every
// key is refused, root is served.
func TestHTTPRestoreNeedsAdmin(t *testing.T) {
	ctx := context.Background()
	b := localBackend{clientapitest.New()}
	g, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "alice", "pw"), g.AddRole(ctx, "all"),
		g.GrantPerm(ctx, "all", auth.Grant{Perm: auth.PermReadWrite, Prefix: true}),
		g.GrantRole(ctx, "alice", "all"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, Guard: g}, b))
	defer srv.Close()
	body := `{"min_version":9,"items":[{"key":"YQ==","value":"eA=="}]}`
	for _, tc := range []struct {
		user   string
		status int
		code   string
	}{
		{"", 401, clientapi.CodeUnauthenticated},
		{"alice", 403, clientapi.CodePermissionDenied},
		{auth.RootUser, 200, ""},
	} {
		h := map[string]string{"Content-Type": "application/json"}
		if tc.user != "" {
			tok, _, err := g.Login(ctx, tc.user, "pw")
			if err != nil {
				t.Fatal(err)
			}
			h["Authorization"] = "Bearer " + tok
		}
		checkHTTP(t, srv.URL, httpCase{name: "restore as " + tc.user, method: "POST", path: "/v1/restore", body: body, header: h, status: tc.status, code: tc.code})
	}
}

// GET /v1/status answers the configured figures; with auth on it needs
// read on every key or admin.
func TestHTTPStatusPermissions(t *testing.T) {
	ctx := context.Background()
	b := localBackend{clientapitest.New()}
	g, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "all", "pw"), g.AddUser(ctx, "some", "pw"), g.AddUser(ctx, "adm", "pw"),
		g.AddRole(ctx, "readall"), g.GrantPerm(ctx, "readall", auth.Grant{Perm: auth.PermRead, Prefix: true}),
		g.AddRole(ctx, "readapp"), g.GrantPerm(ctx, "readapp", auth.Grant{Perm: auth.PermReadWrite, Key: "app/", Prefix: true}),
		g.AddRole(ctx, "admin"), g.GrantPerm(ctx, "admin", auth.Grant{Perm: auth.PermAdmin}),
		g.GrantRole(ctx, "all", "readall"), g.GrantRole(ctx, "some", "readapp"), g.GrantRole(ctx, "adm", "admin"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	status := func(context.Context) any { return map[string]string{"name": "n1"} }
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, Guard: g, Status: status}, b))
	defer srv.Close()
	for _, tc := range []struct {
		user   string
		status int
		code   string
	}{
		{"", 401, clientapi.CodeUnauthenticated},
		{"some", 403, clientapi.CodePermissionDenied},
		{"all", 200, ""},
		{"adm", 200, ""},
		{auth.RootUser, 200, ""},
	} {
		h := map[string]string{}
		if tc.user != "" {
			tok, _, err := g.Login(ctx, tc.user, "pw")
			if err != nil {
				t.Fatal(err)
			}
			h["Authorization"] = "Bearer " + tok
		}
		want := ""
		if tc.status == 200 {
			want = `"name":"n1"`
		}
		checkHTTP(t, srv.URL, httpCase{name: "status as " + tc.user, method: "GET", path: "/v1/status", header: h, status: tc.status, code: tc.code, want: want})
	}
	checkHTTP(t, srv.URL, httpCase{name: "status with a query", method: "GET", path: "/v1/status?x", header: map[string]string{}, status: 400, code: clientapi.CodeBadRequest})
}

// FuzzRestoreRequest: any body of POST /v1/restore is refused with a 4xx
// and the error shape, or answered 200 with one version per item, each at
// least min_version, and every item then reads back with its value.
func FuzzRestoreRequest(f *testing.F) {
	f.Add(`{"min_version":101,"items":[{"key":"YQ==","value":"bmV3"},{"key":"Yg==","value":""}]}`)
	f.Add(`{"min_version":1,"items":[]}`)
	f.Add(`{"min_version":18446744073709551615,"items":[{"key":"YQ==","value":""}]}`)
	f.Add(`{"min_version":5,"items":[{"key":"AGF1dGg=","value":""}]}`)
	f.Add(`{"items":null}`)
	f.Fuzz(func(t *testing.T, body string) {
		b := clientapitest.New()
		h := clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.Limits{MaxKeyBytes: 16, MaxValueBytes: 64}}, b)
		req := httptest.NewRequest("POST", "/v1/restore", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if rec.Code >= 500 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code == "" {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			return
		}
		var in clientapi.RestoreRequest
		var out clientapi.RestoreResponse
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatalf("served a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Versions) != len(in.Items) {
			t.Fatalf("answer %s for %d items (%v)", rec.Body, len(in.Items), err)
		}
		times := map[string]int{}
		for i, it := range in.Items {
			if out.Versions[i] < in.MinVersion || in.MinVersion > protocol.MaxVersion {
				t.Fatalf("item %d at version %d, min_version %d", i, out.Versions[i], in.MinVersion)
			}
			times[string(it.Key)]++
		}
		for _, it := range in.Items {
			s, err := b.Do(context.Background(), kv.Op{Kind: kv.OpGet, Key: string(it.Key)})
			// A key given twice is written twice at once: either value.
			if err != nil || s.Version < in.MinVersion || (times[string(it.Key)] == 1 && !bytes.Equal(s.Value, it.Value)) {
				t.Fatalf("key %q after the restore: %v %v", it.Key, s, err)
			}
		}
	})
}
