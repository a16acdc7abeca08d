package clientapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

type httpCase struct {
	name    string
	method  string
	path    string
	body    string
	header  map[string]string
	status  int
	code    string // error code expected in the body, if any
	want    string // substring expected in the body
	current *uint64
}

func u64(v uint64) *uint64 { return &v }

func TestHTTPAPI(t *testing.T) {
	big := strings.Repeat("x", 33)
	steps := []httpCase{
		{name: "get absent", method: "GET", path: "/v1/kv/a/b", status: 404, code: clientapi.CodeNotFound},
		{name: "put", method: "PUT", path: "/v1/kv/a/b", body: "hello", status: 200, want: `{"version":1}`},
		{name: "get", method: "GET", path: "/v1/kv/a/b", status: 200, want: "hello"},
		{name: "cas stale", method: "PUT", path: "/v1/kv/a/b", body: "x", header: map[string]string{"If-Match": `"7"`}, status: 412, code: clientapi.CodeVersionMismatch, current: u64(1)},
		{name: "cas", method: "PUT", path: "/v1/kv/a/b", body: "x", header: map[string]string{"If-Match": `"1"`}, status: 200, want: `{"version":2}`},
		{name: "create existing", method: "PUT", path: "/v1/kv/a/b", body: "y", header: map[string]string{"If-None-Match": "*"}, status: 412, code: clientapi.CodeVersionMismatch, current: u64(2)},
		{name: "create", method: "PUT", path: "/v1/kv/c", body: "y", header: map[string]string{"If-None-Match": "*"}, status: 200, want: `{"version":1}`},
		{name: "cas absent", method: "PUT", path: "/v1/kv/nope", body: "y", header: map[string]string{"If-Match": `"3"`}, status: 412, code: clientapi.CodeVersionMismatch, current: u64(0)},
		{name: "delete stale", method: "DELETE", path: "/v1/kv/a/b", header: map[string]string{"If-Match": `"1"`}, status: 412, code: clientapi.CodeVersionMismatch, current: u64(2)},
		{name: "delete", method: "DELETE", path: "/v1/kv/a/b", header: map[string]string{"If-Match": `"2"`}, status: 200, want: `{"version":3}`},
		{name: "get deleted", method: "GET", path: "/v1/kv/a/b", status: 404, code: clientapi.CodeNotFound},
		{name: "delete absent", method: "DELETE", path: "/v1/kv/a/b", status: 404, code: clientapi.CodeNotFound},
		{name: "incr absent", method: "POST", path: "/v1/kv/n?incr=5", status: 200, want: `{"value":5,"version":1}`},
		{name: "incr negative", method: "POST", path: "/v1/kv/n?incr=-7", status: 200, want: `{"value":-2,"version":2}`},
		{name: "incr not integer", method: "POST", path: "/v1/kv/c?incr=1", status: 409, code: clientapi.CodeNotAnInteger},
		{name: "incr missing", method: "POST", path: "/v1/kv/n", status: 400, code: clientapi.CodeBadRequest},
		{name: "incr malformed", method: "POST", path: "/v1/kv/n?incr=x", status: 400, code: clientapi.CodeBadRequest},
		{name: "empty key", method: "PUT", path: "/v1/kv/", body: "v", status: 400, code: clientapi.CodeBadRequest},
		{name: "key too large", method: "PUT", path: "/v1/kv/" + big, body: "v", status: 413, code: clientapi.CodeKeyTooLarge},
		{name: "value too large", method: "PUT", path: "/v1/kv/k", body: big, status: 413, code: clientapi.CodeValueTooLarge},
		{name: "malformed if-match", method: "PUT", path: "/v1/kv/k", body: "v", header: map[string]string{"If-Match": "7"}, status: 400, code: clientapi.CodeBadRequest},
		{name: "weak if-match", method: "PUT", path: "/v1/kv/k", body: "v", header: map[string]string{"If-Match": `W/"7"`}, status: 400, code: clientapi.CodeBadRequest},
		{name: "both conditions", method: "PUT", path: "/v1/kv/k", body: "v", header: map[string]string{"If-Match": `"1"`, "If-None-Match": "*"}, status: 400, code: clientapi.CodeBadRequest},
		{name: "unknown query", method: "GET", path: "/v1/kv/k?consistent=1", status: 400, code: clientapi.CodeBadRequest},
		{name: "unknown route", method: "GET", path: "/v2/kv/k", status: 404, code: clientapi.CodeBadRequest},
		{name: "health", method: "GET", path: "/v1/health", status: 200, want: `"healthy":true`},
		{name: "members", method: "GET", path: "/v1/members", status: 200, want: `"name":"n1"`},
	}
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.Limits{MaxKeyBytes: 32, MaxValueBytes: 32}}, clientapitest.New()))
	defer srv.Close()
	for _, tc := range steps {
		checkHTTP(t, srv.URL, tc)
	}
}

func TestHTTPQuorumErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{kv.ErrNoQuorum, 503, clientapi.CodeNoQuorum},
		{fmt.Errorf("wrapped: %w", kv.ErrUnknownOutcome), 504, clientapi.CodeUnknownOutcome},
		{fmt.Errorf("wrapped: %w", kv.ErrNoSpace), 507, clientapi.CodeNoSpace},
		{fmt.Errorf("disk on fire"), 500, clientapi.CodeInternal},
	} {
		b := clientapitest.New()
		b.SetFail(tc.err)
		srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, b))
		checkHTTP(t, srv.URL, httpCase{name: tc.code, method: "PUT", path: "/v1/kv/k", body: "v", status: tc.status, code: tc.code})
		checkHTTP(t, srv.URL, httpCase{name: "health " + tc.code, method: "GET", path: "/v1/health", status: 503, want: `"healthy":false`})
		srv.Close()
	}
}

func checkHTTP(t *testing.T, base string, tc httpCase) {
	t.Helper()
	req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range tc.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", tc.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
		t.Fatalf("%s: %d %s, want %d containing %q", tc.name, resp.StatusCode, body, tc.status, tc.want)
	}
	if tc.status == 200 && tc.method == "GET" && strings.HasPrefix(tc.path, "/v1/kv/") && resp.Header.Get("ETag") == "" {
		t.Fatalf("%s: no ETag", tc.name)
	}
	if tc.code == "" {
		return
	}
	var e struct {
		Error struct {
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Current *uint64 `json:"current_version"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
		t.Fatalf("%s: error body %s, want code %s (%v)", tc.name, body, tc.code, err)
	}
	if tc.current != nil && (e.Error.Current == nil || *e.Error.Current != *tc.current) {
		t.Fatalf("%s: current_version in %s, want %d", tc.name, body, *tc.current)
	}
}

// TestHTTPLease: PUT ?lease=ID attaches the key (with or without a
// condition), GET answers the lease in X-Caspaxos-Lease, a put without
// one detaches the key, and a malformed ID or a lease on another route is
// refused.
func TestHTTPLease(t *testing.T) {
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()))
	defer srv.Close()
	for _, tc := range []httpCase{
		{name: "put with a lease", method: "PUT", path: "/v1/kv/k?lease=1f", body: "v", status: 200, want: `{"version":1}`},
		{name: "cas with a lease", method: "PUT", path: "/v1/kv/k?lease=2a", body: "v", header: map[string]string{"If-Match": `"1"`}, status: 200, want: `{"version":2}`},
		{name: "create with a lease", method: "PUT", path: "/v1/kv/c?lease=3", body: "v", header: map[string]string{"If-None-Match": "*"}, status: 200, want: `{"version":1}`},
		{name: "lease 0", method: "PUT", path: "/v1/kv/k?lease=0", body: "v", status: 400, code: clientapi.CodeBadRequest},
		{name: "lease not hex", method: "PUT", path: "/v1/kv/k?lease=zz", body: "v", status: 400, code: clientapi.CodeBadRequest},
		{name: "lease on a delete", method: "DELETE", path: "/v1/kv/k?lease=1", status: 400, code: clientapi.CodeBadRequest},
		{name: "lease on an increment", method: "POST", path: "/v1/kv/n?incr=1&lease=1", status: 400, code: clientapi.CodeBadRequest},
	} {
		checkHTTP(t, srv.URL, tc)
	}
	lease := func(key string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/kv/" + key)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get(clientapi.LeaseHeader)
	}
	if got := lease("k"); got != "2a" {
		t.Fatalf("k: lease header %q, want 2a", got)
	}
	if got := lease("c"); got != "3" {
		t.Fatalf("c: lease header %q, want 3", got)
	}
	checkHTTP(t, srv.URL, httpCase{name: "put without a lease", method: "PUT", path: "/v1/kv/k", body: "w", status: 200, want: `{"version":3}`})
	if got := lease("k"); got != "" {
		t.Fatalf("k put without a lease: lease header %q, want none", got)
	}
}
