package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeasesOverHTTP: a lease granted and kept alive over HTTP stays
// live; left alone, the nodes' reapers expire it (a committed change: GET
// then answers lease_not_found at every node). Under tls+auth, a user
// without the permission on lease keys is refused, and root is served.
func TestLeasesOverHTTP(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testLeasesOverHTTP(t, s) })
	}
}

func testLeasesOverHTTP(t *testing.T, s setup) {
	c := newClusterWith(t, 3, s, "lease-")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	hc, scheme := http.DefaultClient, "http://"
	if c.sec != nil {
		hc, scheme = c.sec.http, "https://"
	}
	token := func(user, password string) string {
		if c.sec == nil {
			return ""
		}
		resp, err := hc.Post(scheme+c.procs[0].client+"/v1/auth/login", "application/json",
			strings.NewReader(`{"user":"`+user+`","password":"`+password+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.Token == "" {
			t.Fatalf("login as %s: %d %v", user, resp.StatusCode, err)
		}
		return a.Token
	}
	call := func(tok, method string, node int, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, scheme+c.procs[node].client+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	root := token("root", rootPassword)
	if c.sec != nil {
		if st, body := call(token(appUser, appPassword), "POST", 0, "/v1/lease?ttl=1s&id=b"); st != 403 {
			t.Fatalf("grant by a user without the permission: %d %s, want 403", st, body)
		}
	}
	if st, body := call(root, "POST", 0, "/v1/lease?ttl=300ms&id=a"); st != 200 || !strings.Contains(body, `"state":"live"`) {
		t.Fatalf("grant: %d %s", st, body)
	}
	// Keys attached to the lease: with auth on, by a user with only the
	// write permission on the keys (none on the lease).
	app := root
	if c.sec != nil {
		app = token(appUser, appPassword)
	}
	for _, path := range []string{"/v1/kv/lease-k1?lease=a", "/v1/kv/lease-k2?lease=a", "/v1/kv/lease-k2", "/v1/kv/lease-k3?lease=a"} {
		if st, body := call(app, "PUT", 1, path); st != 200 {
			t.Fatalf("put %s: %d %s", path, st, body)
		}
	}
	if st, body := call(app, "PUT", 1, "/v1/kv/lease-k4?lease=b0"); st != 404 || !strings.Contains(body, "lease_not_found") {
		t.Fatalf("put with a lease never granted: %d %s", st, body)
	}
	if l := leaseHeader(t, hc, scheme+c.procs[2].client+"/v1/kv/lease-k1", app); l != "a" {
		t.Fatalf("GET of an attached key: lease header %q, want a", l)
	}
	until := time.Now().Add(time.Second)
	for time.Now().Before(until) {
		if st, body := call(root, "PUT", 1, "/v1/lease/a/keepalive"); st != 200 {
			t.Fatalf("keep-alive while live: %d %s", st, body)
		}
		waitUntil(time.Now().Add(50 * time.Millisecond))
	}
	lastSend := time.Now()
	if st, body := call(root, "PUT", 2, "/v1/lease/a/keepalive"); st != 200 {
		t.Fatalf("keep-alive: %d %s", st, body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, body := call(root, "GET", 2, "/v1/lease/a")
		if st == 404 && strings.Contains(body, "lease_not_found") {
			break
		}
		if st != 200 || time.Now().After(deadline) {
			t.Fatalf("get while waiting for expiry: %d %s", st, body)
		}
		waitUntil(time.Now().Add(50 * time.Millisecond))
	}
	if since := time.Since(lastSend); since < 300*time.Millisecond {
		t.Fatalf("expired %v after the last keep-alive was sent, under its TTL", since)
	}
	for i := range c.procs {
		if st, body := call(root, "PUT", i, "/v1/lease/a/keepalive"); st != 404 {
			t.Fatalf("keep-alive at node %d after expiry: %d %s", i, st, body)
		}
	}
	// The keys still attached go within a sweep; the one put again
	// without the lease stays.
	deadline = time.Now().Add(10 * time.Second)
	for _, key := range []string{"lease-k1", "lease-k3"} {
		for {
			st, body := call(app, "GET", 0, "/v1/kv/"+key)
			if st == 404 {
				break
			}
			if st != 200 || time.Now().After(deadline) {
				t.Fatalf("%s after its lease expired: %d %s", key, st, body)
			}
			waitUntil(time.Now().Add(50 * time.Millisecond))
		}
	}
	if st, body := call(app, "GET", 0, "/v1/kv/lease-k2"); st != 200 {
		t.Fatalf("a key put again without the lease, after the lease expired: %d %s", st, body)
	}
	// A revoked lease's keys go too (the revoking node sweeps at once).
	if st, body := call(root, "POST", 0, "/v1/lease?ttl=10s&id=c"); st != 200 {
		t.Fatalf("grant: %d %s", st, body)
	}
	if st, body := call(app, "PUT", 1, "/v1/kv/lease-k5?lease=c"); st != 200 {
		t.Fatalf("put: %d %s", st, body)
	}
	if st, body := call(root, "DELETE", 2, "/v1/lease/c"); st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		st, body := call(app, "GET", 0, "/v1/kv/lease-k5")
		if st == 404 {
			break
		}
		if st != 200 || time.Now().After(deadline) {
			t.Fatalf("a key of a revoked lease: %d %s", st, body)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

// leaseHeader GETs url and returns its X-Caspaxos-Lease header.
func leaseHeader(t *testing.T, hc *http.Client, url, tok string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return resp.Header.Get("X-Caspaxos-Lease")
}
