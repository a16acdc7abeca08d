package clientapi

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
)

func TestHostGuard(t *testing.T) {
	origin := map[string]string{"Origin": "http://x"}
	for _, tc := range []struct {
		name    string
		host    string
		header  map[string]string
		tls     bool
		allowed []string
		ok      bool
	}{
		{"IPv4", "127.0.0.1", origin, false, nil, true},
		{"IPv4 with port", "127.0.0.1:7070", origin, false, nil, true},
		{"IPv4, not loopback", "10.0.0.1:7070", origin, false, nil, true},
		{"IPv6", "[::1]", origin, false, nil, true},
		{"IPv6 with port", "[::1]:7070", origin, false, nil, true},
		{"IPv6, not loopback, with port", "[2001:db8::1]:7070", origin, false, nil, true},
		{"localhost", "localhost:7070", origin, false, nil, true},
		{"localhost, upper case, trailing dot", "LocalHost.:7070", origin, false, nil, true},
		{"a name under .localhost", "node1.localhost:7070", origin, false, nil, true},
		{"an allowed name, case-insensitively", "Node1.Example.COM:7070", origin, false, []string{"node1.example.com"}, true},
		{"an allowed name given with a port", "node1.example.com", origin, false, []string{"node1.example.com:7070"}, true},
		{"any host (*)", "evil.example:7070", origin, false, []string{"node1.example.com", AllowAnyHost}, true},
		{"rebinding name with Origin", "evil.example:7070", map[string]string{"Origin": "http://evil.example:7070"}, false, []string{"node1.example.com"}, false},
		{"rebinding name with Origin null", "evil.example:7070", map[string]string{"Origin": "null"}, false, nil, false},
		{"a name ending in localhost, not under it", "evillocalhost:7070", origin, false, nil, false},
		{"the same name, no browser headers", "evil.example:7070", nil, false, nil, true},
		{"Sec-Fetch-Site only", "evil.example:7070", map[string]string{"Sec-Fetch-Site": "same-origin"}, false, nil, false},
		{"Sec-Fetch-Mode only", "evil.example:7070", map[string]string{"Sec-Fetch-Mode": "navigate"}, false, nil, false},
		{"over TLS", "evil.example:7070", map[string]string{"Origin": "https://evil.example:7070", "Sec-Fetch-Site": "same-origin"}, true, nil, true},
		{"no Host", "", origin, false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/kv/k", nil)
			r.Host = tc.host
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			err := checkHost(r, tc.allowed)
			if tc.ok != (err == nil) {
				t.Fatalf("Host %q, headers %v, allowed %q: %v, want allowed %v", tc.host, tc.header, tc.allowed, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, kv.ErrPermissionDenied) || !strings.Contains(err.Error(), "--http-allowed-hosts") {
					t.Errorf("error %v: want permission denied naming --http-allowed-hosts", err)
				}
				if c, _ := classify(err); c.code != CodePermissionDenied || c.http != http.StatusForbidden {
					t.Errorf("error %v classified %+v, want 403 %s", err, c, CodePermissionDenied)
				}
			}
		})
	}
}
