package clientapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestHTTPRebindingHostRefused: through the HTTP handler, a page of a
// name rebound to the node's address (Host and Origin both that name) can
// neither read a key nor write one, nor load the status page; the same
// requests naming the node by IP address or localhost are served.
func TestHTTPRebindingHostRefused(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "status page") })
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, UI: ui}, clientapitest.New()))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	do := func(method, path, host, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, out := do("PUT", "/v1/kv/k", "127.0.0.1:"+port, "v1"); code != http.StatusOK {
		t.Fatalf("a put from 127.0.0.1: %d %s", code, out)
	}
	evil := "evil.example:" + port
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/kv/k", ""},
		{"PUT", "/v1/kv/k", "evil"},
		{"GET", "/ui/", ""},
	} {
		code, out := do(tc.method, tc.path, evil, tc.body)
		if code != http.StatusForbidden || !strings.Contains(out, `"code":"`+clientapi.CodePermissionDenied+`"`) ||
			!strings.Contains(out, `host \"evil.example\" is not allowed`) || strings.Contains(out, "v1") {
			t.Errorf("%s %s with Host %s: %d %s, want 403 %s naming the host", tc.method, tc.path, evil, code, out, clientapi.CodePermissionDenied)
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if code, out := do("GET", "/v1/kv/k", host, ""); code != http.StatusOK || out != "v1" {
			t.Errorf("a get from %s after the refused put: %d %q, want 200 \"v1\" (the put changed nothing)", host, code, out)
		}
		if code, out := do("GET", "/ui/", host, ""); code != http.StatusOK || out != "status page" {
			t.Errorf("the status page at %s: %d %q", host, code, out)
		}
	}
	// A name the operator allowed is served.
	allowed := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, AllowedHosts: []string{"evil.example"}}, clientapitest.New()))
	defer allowed.Close()
	srv.URL = allowed.URL
	if code, out := do("PUT", "/v1/kv/k", "evil.example:"+port, "v2"); code != http.StatusOK {
		t.Errorf("a put naming an allowed host: %d %s", code, out)
	}
}
