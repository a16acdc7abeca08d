package consulapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// backend is the map backend with a watch that sees its writes: each
// write is logged, and a watcher delivers the writes after its start that
// match its keys and prefixes (above From), as the node's watch would.
type backend struct {
	*clientapitest.Backend
	mu      sync.Mutex
	log     []kv.WatchEvent
	changed chan struct{} // closed and replaced on every write
	watches int           // watches opened
}

func newBackend() *backend {
	return &backend{Backend: clientapitest.New(), changed: make(chan struct{})}
}

func (b *backend) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	st, err := b.Backend.Do(ctx, op)
	if err == nil && op.Kind != kv.OpGet {
		b.mu.Lock()
		b.log = append(b.log, kv.WatchEvent{Key: op.Key, Value: st.Value, Version: st.Version, Deleted: st.Deleted})
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
	return st, err
}

// Local, Seen and SetSeen make it the Guard's registers.
func (b *backend) Local(string) (protocol.State, error) { return protocol.State{}, nil }
func (b *backend) Seen() (auth.Seen, bool, error)       { return auth.Seen{}, false, nil }
func (b *backend) SetSeen(auth.Seen) error              { return nil }

func (b *backend) Watch(ctx context.Context, req kv.WatchRequest) (clientapi.Watcher, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watches++
	return &watcher{b: b, req: req, next: len(b.log)}, nil
}

type watcher struct {
	b    *backend
	req  kv.WatchRequest
	next int
}

func (w *watcher) Next(ctx context.Context) ([]kv.WatchEvent, error) {
	for {
		w.b.mu.Lock()
		var out []kv.WatchEvent
		for _, ev := range w.b.log[w.next:] {
			in := slices.Contains(w.req.Keys, ev.Key) || slices.ContainsFunc(w.req.Prefixes, func(p string) bool { return strings.HasPrefix(ev.Key, p) })
			if in && ev.Version > w.req.From[ev.Key] {
				out = append(out, ev)
			}
		}
		w.next = len(w.b.log)
		ch := w.b.changed
		w.b.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (w *watcher) Close() {}

func serve(t *testing.T, b *backend, cfg Config) *httptest.Server {
	t.Helper()
	cfg.Watches = b
	srv := httptest.NewServer(New(cfg, b))
	t.Cleanup(srv.Close)
	return srv
}

// reply is one HTTP answer.
type reply struct {
	status int
	index  uint64
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // the request line's host, not a header Go sends
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: string(b)}
	if s := resp.Header.Get("X-Consul-Index"); s != "" {
		if r.index, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("X-Consul-Index %q: %v", s, err)
		}
	}
	return r
}

func pairs(t *testing.T, r reply) []kvPair {
	t.Helper()
	var out []kvPair
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return out
}

func TestKV(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string // the body, or for a JSON listing the keys and values as k=v,...
	}{
		{"missing key", "GET", "/v1/kv/a", "", 404, ""},
		{"put with flags", "PUT", "/v1/kv/a?flags=42", "one", 200, "true\n"},
		{"raw", "GET", "/v1/kv/a?raw", "", 200, "one"},
		{"cas=0 on a live key", "PUT", "/v1/kv/a?cas=0", "x", 200, "false\n"},
		{"cas=0 creates", "PUT", "/v1/kv/b?cas=0", "two", 200, "true\n"},
		{"cas on a stale index", "PUT", "/v1/kv/b?cas=7", "x", 200, "false\n"},
		{"cas on the index", "PUT", "/v1/kv/b?cas=1", "three", 200, "true\n"},
		{"keys under a//b", "PUT", "/v1/kv/a//b/../c", "odd", 200, "true\n"},
		{"recurse", "GET", "/v1/kv/?recurse", "", 200, "a=one,a//b/../c=odd,b=three"},
		{"keys with separator", "GET", "/v1/kv/a?keys&separator=/", "", 200, "[\"a\",\"a/\"]\n"},
		{"delete cas stale", "DELETE", "/v1/kv/b?cas=1", "", 200, "false\n"},
		{"delete cas", "DELETE", "/v1/kv/b?cas=2", "", 200, "true\n"},
		{"delete absent", "DELETE", "/v1/kv/b", "", 200, "true\n"},
		{"delete cas=0 on a live key", "DELETE", "/v1/kv/a?cas=0", "", 200, "false\n"},
		{"delete tree", "DELETE", "/v1/kv/a?recurse", "", 200, "true\n"},
		{"tree gone", "GET", "/v1/kv/?recurse", "", 404, ""},
		{"bad flags", "PUT", "/v1/kv/a?flags=-1", "x", 400, ""},
		{"unknown parameter", "GET", "/v1/kv/a?filter=x", "", 400, ""},
		{"a write without a key", "PUT", "/v1/kv/", "x", 400, ""},
		{"cas with recurse", "DELETE", "/v1/kv/a?recurse&cas=1", "", 400, ""},
		{"another namespace", "GET", "/v1/kv/a?ns=team", "", 400, ""},
		{"acquire with a foreign session", "PUT", "/v1/kv/a?acquire=s", "", 400, ""},
		{"not served", "GET", "/v1/catalog/nodes", "", 501, ""},
	} {
		r := do(t, srv, tc.method, tc.path, tc.body)
		if r.status != tc.status {
			t.Fatalf("%s: status %d (%s), want %d", tc.name, r.status, r.body, tc.status)
		}
		if tc.want == "" || r.status != 200 {
			continue
		}
		got := r.body
		if strings.Contains(tc.path, "recurse") && tc.method == "GET" {
			var kvs []string
			for _, p := range pairs(t, r) {
				kvs = append(kvs, p.Key+"="+string(p.Value))
			}
			got = strings.Join(kvs, ",")
		}
		if got != tc.want {
			t.Fatalf("%s: body %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A key's fields: ModifyIndex is its version, CreateIndex the version of
// its creation, Flags its flags; its X-Consul-Index is its version, a
// deleted key's too (404), and above every version for a key never
// written, so that a blocking query on it wakes when it is created at
// version 1.
func TestKeyFieldsAndIndex(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	do(t, srv, "PUT", "/v1/kv/k?flags=7", "v1")
	do(t, srv, "PUT", "/v1/kv/k", "v2")
	r := do(t, srv, "GET", "/v1/kv/k", "")
	p := pairs(t, r)
	if len(p) != 1 || p[0].ModifyIndex != 2 || p[0].CreateIndex != 1 || p[0].Flags != 0 || string(p[0].Value) != "v2" || r.index != 2 {
		t.Fatalf("got %+v index %d; want ModifyIndex 2, CreateIndex 1, Flags 0 (a put without flags clears them), index 2", p, r.index)
	}
	if !strings.Contains(r.body, `"Value":"djI="`) || strings.Contains(r.body, "Session") {
		t.Fatalf("body %s: want the value in base64 and no Session", r.body)
	}
	do(t, srv, "DELETE", "/v1/kv/k", "")
	if r := do(t, srv, "GET", "/v1/kv/k", ""); r.status != 404 || r.index != 3 {
		t.Fatalf("deleted key: %d index %d, want 404 index 3", r.status, r.index)
	}
	never := do(t, srv, "GET", "/v1/kv/never", "")
	if never.status != 404 || never.index != absentIndex {
		t.Fatalf("absent key: %d index %d, want 404 index %d", never.status, never.index, absentIndex)
	}
	// Created at version 1, it no longer answers the absent key's index:
	// a blocking query at that index returns at once.
	do(t, srv, "PUT", "/v1/kv/never", "v")
	start := time.Now()
	if r := do(t, srv, "GET", "/v1/kv/never?index="+strconv.FormatUint(never.index, 10)+"&wait=10s", ""); r.status != 200 || r.index != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("a key created at version 1 after a read while absent: %d index %d after %v", r.status, r.index, time.Since(start))
	}
}

// A prefix's index stays while nothing under it changes and moves when a
// key under it is added, changed or deleted; a change elsewhere leaves it.
func TestPrefixIndexMoves(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	do(t, srv, "PUT", "/v1/kv/p/a", "1")
	index := func() uint64 { return do(t, srv, "GET", "/v1/kv/p/?keys", "").index }
	i0 := index()
	if i1 := index(); i1 != i0 {
		t.Fatalf("index moved from %d to %d with no change", i0, i1)
	}
	last := i0
	for _, step := range []struct {
		method, path string
		moves        bool
	}{
		{"PUT", "/v1/kv/other", false},
		{"PUT", "/v1/kv/p/b", true},
		{"PUT", "/v1/kv/p/a", true},
		{"DELETE", "/v1/kv/p/b", true},
		{"PUT", "/v1/kv/q/x", false},
	} {
		do(t, srv, step.method, step.path, "x")
		i := index()
		if (i != last) != step.moves {
			t.Fatalf("%s %s: index %d after %d, want it to move: %v", step.method, step.path, i, last, step.moves)
		}
		last = i
	}
}

// A blocking query at the current index returns once a change comes (by
// the watch), and at the wait's end with the same index when none does.
func TestBlockingQueries(t *testing.T) {
	for _, tc := range []struct {
		name, query, write string
	}{
		{"key", "/v1/kv/w/k", "/v1/kv/w/k"},
		{"prefix", "/v1/kv/w/?recurse", "/v1/kv/w/new"},
		{"keys", "/v1/kv/w/?keys", "/v1/kv/w/k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend()
			srv := serve(t, b, Config{})
			do(t, srv, "PUT", "/v1/kv/w/k", "0")
			idx := do(t, srv, "GET", tc.query, "").index
			// No change: the wait ends, same index.
			start := time.Now()
			if r := do(t, srv, "GET", tc.query+sep(tc.query)+"index="+strconv.FormatUint(idx, 10)+"&wait=150ms", ""); r.status != 200 || r.index != idx {
				t.Fatalf("no change: %d index %d, want 200 index %d", r.status, r.index, idx)
			}
			if time.Since(start) < 150*time.Millisecond {
				t.Fatalf("returned after %v, before its wait of 150ms with no change", time.Since(start))
			}
			// A change while it waits.
			done := make(chan reply, 1)
			watches := b.watchCount()
			go func() {
				done <- do(t, srv, "GET", tc.query+sep(tc.query)+"index="+strconv.FormatUint(idx, 10)+"&wait=30s", "")
			}()
			b.waitWatches(t, watches+1)
			do(t, srv, "PUT", tc.write, "1")
			select {
			case r := <-done:
				if r.status != 200 || r.index == idx {
					t.Fatalf("after a change: %d index %d, want 200 and an index other than %d", r.status, r.index, idx)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the blocking query did not return after a change")
			}
			// Another index than the current one answers at once.
			if r := do(t, srv, "GET", tc.query+sep(tc.query)+"index=999999&wait=30s", ""); r.status != 200 {
				t.Fatalf("stale index: %d", r.status)
			}
		})
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

func (b *backend) watchCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches
}

// waitWatches waits until n watches were opened: the blocking query waits.
func (b *backend) waitWatches(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.watchCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches opened, want %d", b.watchCount(), n)
		}
		time.Sleep(time.Millisecond) // a condition on another goroutine's progress
	}
}

func TestTxn(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	do(t, srv, "PUT", "/v1/kv/t", "v")
	for _, tc := range []struct {
		name, body string
		status     int
		want       string // a substring of the answer
		value      string // t's value after
	}{
		{"check-index then set", `[{"KV":{"Verb":"check-index","Key":"t","Index":1}},{"KV":{"Verb":"set","Key":"t","Value":"dzI=","Flags":3}},{"KV":{"Verb":"get","Key":"t"}}]`,
			200, `"ModifyIndex":2`, "w2"},
		{"stale check rolls back", `[{"KV":{"Verb":"set","Key":"t","Value":"eA=="}},{"KV":{"Verb":"check-index","Key":"t","Index":1}}]`,
			409, `"OpIndex":1`, "w2"},
		{"cas", `[{"KV":{"Verb":"cas","Key":"t","Index":2,"Value":"dzM="}}]`, 200, `"Flags":0`, "w3"},
		{"two keys refused", `[{"KV":{"Verb":"set","Key":"t","Value":"eA=="}},{"KV":{"Verb":"set","Key":"u","Value":"eA=="}}]`,
			409, "one key only", "w3"},
		{"sessions refused", `[{"KV":{"Verb":"lock","Key":"t","Session":"s"}}]`, 409, "sessions", "w3"},
		{"other kinds refused", `[{"Node":{"Verb":"get"}}]`, 409, "KV operations only", "w3"},
		{"get-tree refused", `[{"KV":{"Verb":"get-tree","Key":"t"}}]`, 409, "many keys", "w3"},
		{"malformed", `[{"KV":`, 400, "Failed to parse body", "w3"},
		{"unknown verb", `[{"KV":{"Verb":"frob","Key":"t"}}]`, 400, "unknown KV verb", "w3"},
		{"check-not-exists fails", `[{"KV":{"Verb":"check-not-exists","Key":"t"}},{"KV":{"Verb":"delete","Key":"t"}}]`, 409, "exists", "w3"},
		{"delete-cas", `[{"KV":{"Verb":"delete-cas","Key":"t","Index":3}}]`, 200, `"Results":null`, ""},
	} {
		r := do(t, srv, "PUT", "/v1/txn", tc.body)
		if r.status != tc.status || !strings.Contains(r.body, tc.want) {
			t.Fatalf("%s: %d %s, want %d with %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
		got := do(t, srv, "GET", "/v1/kv/t?raw", "")
		if got.body != tc.value || (tc.value == "") != (got.status == 404) {
			t.Fatalf("%s: t is %d %q after, want %q", tc.name, got.status, got.body, tc.value)
		}
	}
}

func TestStatus(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{Addr: "127.0.0.1:8500", NodeName: "n1"})
	if r := do(t, srv, "GET", "/v1/status/leader", ""); r.status != 200 || r.body != "\"127.0.0.1:8500\"\n" {
		t.Fatalf("leader: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/status/peers", ""); r.status != 200 || !strings.HasPrefix(r.body, "[") {
		t.Fatalf("peers: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/agent/self", ""); r.status != 200 || !strings.Contains(r.body, `"NodeName":"n1"`) {
		t.Fatalf("agent/self: %d %q", r.status, r.body)
	}
	b.SetFail(kv.ErrNoQuorum)
	if r := do(t, srv, "GET", "/v1/status/leader", ""); r.status != 200 || r.body != "\"\"\n" {
		t.Fatalf("leader without a quorum: %d %q, want \"\"", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/kv/a", ""); r.status != 503 {
		t.Fatalf("read without a quorum: %d, want 503", r.status)
	}
}

// With auth enabled, Consul's token header, ?token= and a bearer header
// carry a caspaxos token; an invalid one is "ACL not found", a denied
// request "Permission denied"; a listing shows only readable keys.
func TestAuth(t *testing.T) {
	ctx := context.Background()
	b := newBackend()
	g, err := auth.New(auth.Config{BcryptCost: 4}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "app", "pw"), g.AddRole(ctx, "app"),
		g.GrantPerm(ctx, "app", auth.Grant{Perm: auth.PermReadWrite, Key: "app/", Prefix: true}),
		g.GrantRole(ctx, "app", "app"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	root, _, err := g.Login(ctx, auth.RootUser, "pw")
	if err != nil {
		t.Fatal(err)
	}
	app, _, err := g.Login(ctx, "app", "pw")
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, b, Config{Guard: g})
	do(t, srv, "PUT", "/v1/kv/secret", "s", "X-Consul-Token", root)
	for _, tc := range []struct {
		name, method, path string
		header             []string
		status             int
		want               string
	}{
		{"no token", "GET", "/v1/kv/app/x", nil, 403, "ACL not found"},
		{"bad token", "GET", "/v1/kv/app/x", []string{"X-Consul-Token", "nope"}, 403, "ACL not found"},
		{"header token", "PUT", "/v1/kv/app/x", []string{"X-Consul-Token", app}, 200, "true"},
		{"query token", "GET", "/v1/kv/app/x?raw&token=" + app, nil, 200, "v"},
		{"bearer token", "GET", "/v1/kv/app/x?raw", []string{"Authorization", "Bearer " + app}, 200, "v"},
		{"denied", "GET", "/v1/kv/secret", []string{"X-Consul-Token", app}, 403, "Permission denied"},
		{"listing filtered", "GET", "/v1/kv/?keys", []string{"X-Consul-Token", app}, 200, `["app/x"]`},
		{"listing as root", "GET", "/v1/kv/?keys", []string{"X-Consul-Token", root}, 200, `["app/x","secret"]`},
	} {
		r := do(t, srv, tc.method, tc.path, "v", tc.header...)
		if r.status != tc.status || !strings.Contains(r.body, tc.want) {
			t.Fatalf("%s: %d %q, want %d with %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
	}
}

func TestAppendFolded(t *testing.T) {
	for _, tc := range []struct {
		prefix, sep string
		keys        []string
		want        []string
	}{
		{"", "", []string{"a", "a/b"}, []string{"a", "a/b"}},
		{"", "/", []string{"a", "a/b", "a/c", "b/c/d"}, []string{"a", "a/", "b/"}},
		{"a/", "/", []string{"a/", "a/b", "a/b/c", "a/d/e"}, []string{"a/", "a/b", "a/b/", "a/d/"}},
		{"x", "::", []string{"x::1::2", "x::1::3", "xy"}, []string{"x::", "xy"}},
	} {
		var got []string
		for _, k := range tc.keys {
			got = appendFolded(got, tc.prefix, k, tc.sep)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("prefix %q sep %q keys %q: %q, want %q", tc.prefix, tc.sep, tc.keys, got, tc.want)
		}
	}
}

// A prefix's index is the same for the same listing, whatever node and
// whenever (no state), differs when a key is added, changed or gone, and
// is never 0 (which asks a blocking query not to wait).
func TestPrefixIndex(t *testing.T) {
	a := []kv.ListItem{{Key: "p/a", Version: 3}, {Key: "p/b", Version: 9}}
	same := []kv.ListItem{{Key: "p/a", Version: 3, Value: []byte("values do not count")}, {Key: "p/b", Version: 9}}
	if prefixIndex(a) != prefixIndex(same) {
		t.Fatal("the same (key, version) pairs gave two indexes")
	}
	seen := map[uint64]string{prefixIndex(a): "a"}
	for name, items := range map[string][]kv.ListItem{
		"changed": {{Key: "p/a", Version: 4}, {Key: "p/b", Version: 9}},
		"added":   {{Key: "p/a", Version: 3}, {Key: "p/b", Version: 9}, {Key: "p/c", Version: 1}},
		"gone":    {{Key: "p/a", Version: 3}},
		"empty":   nil,
		"split":   {{Key: "p/ab", Version: 3}},
	} {
		i := prefixIndex(items)
		if i == 0 {
			t.Fatalf("%s: index 0", name)
		}
		if other, ok := seen[i]; ok {
			t.Fatalf("%s: the same index as %s", name, other)
		}
		seen[i] = name
	}
}

// TestBrowserRequestsRefused: a web page reaches this port on localhost
// neither by a cross-origin simple request (a text/plain POST is a KV
// write here) nor by a DNS-rebound host name; nothing it sends changes
// anything, and clients that are not browsers are served as before.
func TestBrowserRequestsRefused(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	send := func(method, path, host, body string, header ...string) (int, string) {
		t.Helper()
		r := do(t, srv, method, path, body, append([]string{"Host", host}, header...)...)
		return r.status, r.body
	}
	local, evil := "127.0.0.1:"+port, "evil.example:"+port
	for _, tc := range []struct {
		name, method, host string
		header             []string
		want               string
	}{
		{"cross-origin text/plain POST", "POST", local, []string{"Origin", "http://evil.example", "Content-Type", "text/plain"}, "cross-origin"},
		{"cross-site fetch", "PUT", local, []string{"Sec-Fetch-Site", "cross-site"}, "cross-origin"},
		{"rebound host, write", "PUT", evil, []string{"Origin", "http://" + evil}, `host "evil.example" is not allowed`},
		{"rebound host, read", "GET", evil, []string{"Sec-Fetch-Site", "same-origin"}, `host "evil.example" is not allowed`},
	} {
		code, out := send(tc.method, "/v1/kv/k", tc.host, "evil", tc.header...)
		if code != http.StatusForbidden || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %d %q, want 403 saying %q", tc.name, code, out, tc.want)
		}
	}
	if code, out := send("GET", "/v1/kv/k?raw", local, ""); code != http.StatusNotFound {
		t.Fatalf("k after the refused writes: %d %q, want 404 (nothing written)", code, out)
	}
	// Not a browser, or a page of this port's own origin: served.
	if code, out := send("PUT", "/v1/kv/k", evil, "v1"); code != http.StatusOK {
		t.Fatalf("a put without browser headers: %d %q", code, out)
	}
	if code, out := send("GET", "/v1/kv/k?raw", local, "", "Origin", "http://"+local, "Sec-Fetch-Site", "same-origin"); code != http.StatusOK || out != "v1" {
		t.Fatalf("a same-origin read: %d %q, want v1", code, out)
	}
}
