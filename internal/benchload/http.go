package benchload

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// HTTPDriver drives a caspaxos cluster through its HTTP API as a curl or
// Python user would: plain net/http, one request per operation over
// keep-alive connections, requests spread round robin over the nodes
// whatever the key (no routing to a key's home node; a node that is not
// the key's home forwards it).
type HTTPDriver struct {
	hc    *http.Client
	bases []string // "http://host:port", in the order this driver uses them
	next  atomic.Uint64
}

// httpIdlePerHost is how many idle keep-alive connections a driver keeps
// per node. The clients of a run share the drivers, so one driver carries
// up to clients/conns requests at once, each on a connection of its own
// (HTTP/1.1): a bound below that would close and reopen connections under
// load and measure TCP handshakes instead of the store. The suite runs at
// most a few hundred clients.
const httpIdlePerHost = 1024

// httpMaxBodyBytes bounds what a driver reads of one answer; the benchmark's
// values and error bodies are far smaller.
const httpMaxBodyBytes = 1 << 20

// DialHTTP returns conns HTTP drivers of the nodes at endpoints (host:port,
// the client port; https with tlsConfig, which also carries a client
// certificate if the nodes require one). Driver i starts its round robin at
// node i, so the first requests of the drivers land on different nodes.
// Each driver has a Transport of its own, as separate client processes
// would. The returned function closes their idle connections.
func DialHTTP(endpoints []string, conns int, tlsConfig *tls.Config) ([]Driver, func(), error) {
	return dialHTTP(endpoints, conns, tlsConfig, false)
}

// DialH2C is DialHTTP over HTTP/2 cleartext with prior knowledge (h2c):
// each driver's requests share one connection per node, many at once,
// where HTTP/1.1 needs a connection per request in flight. Plain TCP only
// (over TLS the client port keeps HTTP/2 for gRPC).
func DialH2C(endpoints []string, conns int) ([]Driver, func(), error) {
	return dialHTTP(endpoints, conns, nil, true)
}

func dialHTTP(endpoints []string, conns int, tlsConfig *tls.Config, h2c bool) ([]Driver, func(), error) {
	if len(endpoints) == 0 || conns <= 0 {
		return nil, nil, errors.New("caspaxos/benchload: need endpoints and at least one connection")
	}
	scheme := "http://"
	if tlsConfig != nil {
		scheme = "https://"
	}
	var bases []string
	for _, ep := range endpoints {
		if strings.Contains(ep, "://") {
			return nil, nil, fmt.Errorf("caspaxos/benchload: endpoint %q: want host:port", ep)
		}
		bases = append(bases, scheme+ep)
	}
	var out []Driver
	var transports []*http.Transport
	for i := range conns {
		tr := &http.Transport{
			Proxy:               nil, // the nodes are reached directly, whatever the environment says
			MaxIdleConns:        0,   // no bound over all nodes; the per-node bound below holds
			MaxIdleConnsPerHost: httpIdlePerHost,
			TLSClientConfig:     tlsConfig.Clone(),
		}
		if h2c {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		transports = append(transports, tr)
		k := i % len(bases)
		order := append(append([]string{}, bases[k:]...), bases[:k]...)
		out = append(out, &HTTPDriver{hc: &http.Client{Transport: tr}, bases: order})
	}
	closeAll := func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}
	return out, closeAll, nil
}

// node returns the base URL of the next request's node.
func (d *HTTPDriver) node() string {
	n := d.next.Add(1) - 1
	return d.bases[n%uint64(len(d.bases))]
}

// kvURL is the URL of key at the next node; the key's "/" stay path
// separators, as the API reads the rest of the path as the key.
func (d *HTTPDriver) kvURL(key, query string) string {
	u := d.node() + (&url.URL{Path: "/v1/kv/" + key}).EscapedPath()
	if query != "" {
		u += "?" + query
	}
	return u
}

// HTTPError is a refusal by the API: the status, and the code and message
// of its {"error":{...}} body when it has one.
type HTTPError struct {
	Method, URL string
	Status      int
	Code        string
	Message     string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("caspaxos/benchload: %s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// do sends one request and returns the body of a 200 answer, or, for any
// other status, nil and an *HTTPError. The body is always read to its end
// and closed: that returns the connection to the keep-alive pool.
func (d *HTTPDriver) do(ctx context.Context, method, u string, body []byte, header map[string]string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, httpMaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("caspaxos/benchload: %s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode == http.StatusOK {
		return data, nil
	}
	he := &HTTPError{Method: method, URL: u, Status: resp.StatusCode}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil {
		he.Code, he.Message = eb.Error.Code, eb.Error.Message
	}
	return nil, he
}

// isNotFound reports whether err is the API's 404: the key is absent.
func isNotFound(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}

// versionAnswer checks a write's 200 body, {"version":N} with N at least 1:
// a 200 that does not say what it wrote is not counted as a success.
func versionAnswer(method, u string, data []byte) error {
	var a struct {
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(data, &a); err != nil || a.Version == 0 {
		return fmt.Errorf("caspaxos/benchload: %s %s: answer %q is not {\"version\":N}", method, u, data)
	}
	return nil
}

// Put implements Driver: PUT /v1/kv/{key}.
func (d *HTTPDriver) Put(ctx context.Context, key string, value []byte) error {
	u := d.kvURL(key, "")
	data, err := d.do(ctx, http.MethodPut, u, value, nil)
	if err != nil {
		return err
	}
	return versionAnswer(http.MethodPut, u, data)
}

// Create stores value under key only if the key is absent: PUT with
// If-None-Match: *. A key that exists is an *HTTPError with status 412.
// The Create workload calls Put on fresh keys, as the Go client's and
// etcd's drivers do, so that the three measure the same write; Create is
// here for callers that want the conditional form.
func (d *HTTPDriver) Create(ctx context.Context, key string, value []byte) error {
	u := d.kvURL(key, "")
	data, err := d.do(ctx, http.MethodPut, u, value, map[string]string{"If-None-Match": "*"})
	if err != nil {
		return err
	}
	return versionAnswer(http.MethodPut, u, data)
}

// Get implements Driver: GET /v1/kv/{key}; 404 is an answer.
func (d *HTTPDriver) Get(ctx context.Context, key string) error {
	_, err := d.do(ctx, http.MethodGet, d.kvURL(key, ""), nil, nil)
	if isNotFound(err) {
		return nil
	}
	return err
}

// Increment implements Driver: POST /v1/kv/{key}?incr=1, an increment the
// server applies atomically, never a conflict.
func (d *HTTPDriver) Increment(ctx context.Context, key string) (int, error) {
	u := d.kvURL(key, "incr=1")
	data, err := d.do(ctx, http.MethodPost, u, nil, nil)
	if err != nil {
		return 0, err
	}
	var a struct {
		Value   *int64 `json:"value"`
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(data, &a); err != nil || a.Value == nil || a.Version == 0 {
		return 0, fmt.Errorf("caspaxos/benchload: POST %s: answer %q is not {\"value\":V,\"version\":N}", u, data)
	}
	return 0, nil
}

// Counter implements Driver: GET /v1/kv/{key}, the decimal body; 404 is 0.
func (d *HTTPDriver) Counter(ctx context.Context, key string) (int64, error) {
	data, err := d.do(ctx, http.MethodGet, d.kvURL(key, ""), nil, nil)
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(data), 10, 64)
}
