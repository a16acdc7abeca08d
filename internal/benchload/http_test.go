package benchload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI answers as the HTTP API does, with canned answers: each request
// is recorded, and answered with the status and body set for its method.
type fakeAPI struct {
	mu     sync.Mutex
	status int
	body   string
	seen   []*http.Request
	bodies []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, r)
	f.bodies = append(f.bodies, string(b))
	status, body := f.status, f.body
	f.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeAPI) set(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.seen, f.bodies = status, body, nil, nil
}

func (f *fakeAPI) last() (*http.Request, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[len(f.seen)-1], f.bodies[len(f.bodies)-1]
}

func TestHTTPDriverRequestsAndAnswers(t *testing.T) {
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	ds, closeAll, err := DialHTTP([]string{strings.TrimPrefix(srv.URL, "http://")}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	d := ds[0].(*HTTPDriver)
	const notFound = `{"error":{"code":"not_found","message":"key not found"}}`
	const mismatch = `{"error":{"code":"version_mismatch","message":"version mismatch","current_version":3}}`
	const noQuorum = `{"error":{"code":"no_quorum","message":"no quorum"}}`
	tests := []struct {
		name         string
		call         func(context.Context) (int64, error)
		status       int
		body         string
		method, path string
		query        string
		header       [2]string // a header the request must carry
		sent         string    // the request's body
		want         int64     // Counter's answer
		wantStatus   int       // 0: no error; -1: an error that is not an *HTTPError
		wantCode     string
	}{
		{name: "put", call: func(ctx context.Context) (int64, error) { return 0, d.Put(ctx, "bench/key-1", []byte("v")) },
			status: 200, body: `{"version":4}`, method: "PUT", path: "/v1/kv/bench/key-1", sent: "v"},
		{name: "put 200 without a version", call: func(ctx context.Context) (int64, error) { return 0, d.Put(ctx, "k", []byte("v")) },
			status: 200, body: `{}`, method: "PUT", path: "/v1/kv/k", sent: "v", wantStatus: -1},
		{name: "put no quorum", call: func(ctx context.Context) (int64, error) { return 0, d.Put(ctx, "k", []byte("v")) },
			status: 503, body: noQuorum, method: "PUT", path: "/v1/kv/k", sent: "v", wantStatus: 503, wantCode: "no_quorum"},
		{name: "create", call: func(ctx context.Context) (int64, error) { return 0, d.Create(ctx, "fresh", []byte("x")) },
			status: 200, body: `{"version":1}`, method: "PUT", path: "/v1/kv/fresh", header: [2]string{"If-None-Match", "*"}, sent: "x"},
		{name: "create of a key that exists", call: func(ctx context.Context) (int64, error) { return 0, d.Create(ctx, "fresh", []byte("x")) },
			status: 412, body: mismatch, method: "PUT", path: "/v1/kv/fresh", header: [2]string{"If-None-Match", "*"}, sent: "x",
			wantStatus: 412, wantCode: "version_mismatch"},
		{name: "get", call: func(ctx context.Context) (int64, error) { return 0, d.Get(ctx, "a b/c") },
			status: 200, body: "value", method: "GET", path: "/v1/kv/a b/c"},
		{name: "get absent is an answer", call: func(ctx context.Context) (int64, error) { return 0, d.Get(ctx, "k") },
			status: 404, body: notFound, method: "GET", path: "/v1/kv/k"},
		{name: "get no quorum", call: func(ctx context.Context) (int64, error) { return 0, d.Get(ctx, "k") },
			status: 503, body: noQuorum, method: "GET", path: "/v1/kv/k", wantStatus: 503, wantCode: "no_quorum"},
		{name: "get overloaded, no JSON body", call: func(ctx context.Context) (int64, error) { return 0, d.Get(ctx, "k") },
			status: 429, body: "busy", method: "GET", path: "/v1/kv/k", wantStatus: 429},
		{name: "incr", call: func(ctx context.Context) (int64, error) { n, err := d.Increment(ctx, "hot"); return int64(n), err },
			status: 200, body: `{"value":0,"version":7}`, method: "POST", path: "/v1/kv/hot", query: "incr=1"},
		{name: "incr 200 without a value", call: func(ctx context.Context) (int64, error) { n, err := d.Increment(ctx, "hot"); return int64(n), err },
			status: 200, body: `{"version":7}`, method: "POST", path: "/v1/kv/hot", query: "incr=1", wantStatus: -1},
		{name: "incr not an integer", call: func(ctx context.Context) (int64, error) { n, err := d.Increment(ctx, "hot"); return int64(n), err },
			status: 409, body: `{"error":{"code":"not_an_integer","message":"m"}}`, method: "POST", path: "/v1/kv/hot", query: "incr=1",
			wantStatus: 409, wantCode: "not_an_integer"},
		{name: "counter", call: func(ctx context.Context) (int64, error) { return d.Counter(ctx, "hot") },
			status: 200, body: "42", method: "GET", path: "/v1/kv/hot", want: 42},
		{name: "counter absent is 0", call: func(ctx context.Context) (int64, error) { return d.Counter(ctx, "hot") },
			status: 404, body: notFound, method: "GET", path: "/v1/kv/hot"},
		{name: "counter not a number", call: func(ctx context.Context) (int64, error) { return d.Counter(ctx, "hot") },
			status: 200, body: "x", method: "GET", path: "/v1/kv/hot", wantStatus: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api.set(tt.status, tt.body)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := tt.call(ctx)
			req, sent := api.last()
			if req.Method != tt.method || req.URL.Path != tt.path || req.URL.RawQuery != tt.query || sent != tt.sent {
				t.Errorf("request %s %s?%s body %q, want %s %s?%s body %q", req.Method, req.URL.Path, req.URL.RawQuery, sent,
					tt.method, tt.path, tt.query, tt.sent)
			}
			if tt.header[0] != "" && req.Header.Get(tt.header[0]) != tt.header[1] {
				t.Errorf("header %s = %q, want %q", tt.header[0], req.Header.Get(tt.header[0]), tt.header[1])
			}
			var he *HTTPError
			switch {
			case tt.wantStatus == 0 && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantStatus == 0 && got != tt.want:
				t.Fatalf("answer %d, want %d", got, tt.want)
			case tt.wantStatus == -1 && (err == nil || errors.As(err, &he)):
				t.Fatalf("error %v, want one that is not an HTTP status", err)
			case tt.wantStatus > 0 && (!errors.As(err, &he) || he.Status != tt.wantStatus || he.Code != tt.wantCode):
				t.Fatalf("error %v, want status %d code %q", err, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// Every driver starts at a different node and then takes the nodes in
// turn, whatever the key; the connections are kept alive.
func TestHTTPDriversSpreadOverNodesAndReuseConnections(t *testing.T) {
	var mu sync.Mutex
	hits := map[string][]int{} // node → the request numbers it served
	conns := map[string]bool{} // remote addresses seen
	n := 0
	var eps []string
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[eps[i]] = append(hits[eps[i]], n)
			conns[r.RemoteAddr] = true
			n++
			mu.Unlock()
			io.WriteString(w, `{"version":1}`)
		}))
		t.Cleanup(srv.Close)
		eps = append(eps, strings.TrimPrefix(srv.URL, "http://"))
	}
	ds, closeAll, err := DialHTTP(eps, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	ctx := context.Background()
	// Driver 1 first: it starts at the second node.
	for _, d := range []Driver{ds[1], ds[0]} {
		for range 3 {
			if err := d.Put(ctx, "same-key", []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string][]int{eps[0]: {2, 3}, eps[1]: {0, 4}, eps[2]: {1, 5}}
	for ep, w := range want {
		if g := hits[ep]; len(g) != len(w) || g[0] != w[0] || g[1] != w[1] {
			t.Errorf("node %s served requests %v, want %v", ep, g, w)
		}
	}
	// Sequential requests of two drivers to three nodes: at most one
	// connection per driver and node.
	if len(conns) > 6 {
		t.Errorf("%d connections for 6 sequential requests over 2 drivers and 3 nodes: keep-alive not used", len(conns))
	}
	for range 10 {
		if err := ds[0].Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if len(conns) > 6 {
		t.Errorf("%d connections after 10 more sequential gets: keep-alive not used", len(conns))
	}
}

func TestHTTPDriverHonoursTheOperationsDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	ds, closeAll, err := DialHTTP([]string{strings.TrimPrefix(srv.URL, "http://")}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ds[0].Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the deadline's", err)
	}
}

func TestDialHTTPRefusesBadArguments(t *testing.T) {
	for _, tt := range []struct {
		eps   []string
		conns int
	}{{nil, 1}, {[]string{"127.0.0.1:1"}, 0}, {[]string{"http://127.0.0.1:1"}, 1}} {
		if _, _, err := DialHTTP(tt.eps, tt.conns, nil); err == nil {
			t.Errorf("DialHTTP(%q, %d) succeeded", tt.eps, tt.conns)
		}
	}
}

// TestDialH2C: DialH2C's requests reach the server over HTTP/2 with prior
// knowledge, and DialHTTP's over HTTP/1.1, on a server that serves both.
func TestDialH2C(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dial  func(eps []string) ([]Driver, func(), error)
		proto string
	}{
		{"h2c", func(eps []string) ([]Driver, func(), error) { return DialH2C(eps, 1) }, "HTTP/2.0"},
		{"http", func(eps []string) ([]Driver, func(), error) { return DialHTTP(eps, 1, nil) }, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{}
			srv := httptest.NewUnstartedServer(api)
			srv.Config.Protocols = new(http.Protocols)
			srv.Config.Protocols.SetHTTP1(true)
			srv.Config.Protocols.SetUnencryptedHTTP2(true)
			srv.Start()
			t.Cleanup(srv.Close)
			ds, closeAll, err := tc.dial([]string{strings.TrimPrefix(srv.URL, "http://")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(closeAll)
			api.set(200, `{"version":1}`)
			if err := ds[0].Put(context.Background(), "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			if r, _ := api.last(); r.Proto != tc.proto {
				t.Fatalf("request over %s, want %s", r.Proto, tc.proto)
			}
		})
	}
}
