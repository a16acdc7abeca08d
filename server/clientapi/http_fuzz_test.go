package clientapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// Fuzz targets of the HTTP API's request parsing: the key in the path,
// If-Match and If-None-Match, the query. `go test` runs their seeds;
// scripts/fuzz.sh fuzzes them (README.md, "make fuzz").

// fuzzLimits are small, so that inputs reach the limits.
var fuzzLimits = kv.Limits{MaxKeyBytes: 64, MaxValueBytes: 64}

// httpStatusOf is README.md's table of error codes and their HTTP statuses.
var httpStatusOf = map[string]int{
	clientapi.CodeNotFound:        http.StatusNotFound,
	clientapi.CodeVersionMismatch: http.StatusPreconditionFailed,
	clientapi.CodeNotAnInteger:    http.StatusConflict,
	clientapi.CodeOverflow:        http.StatusConflict,
	clientapi.CodeKeyTooLarge:     http.StatusRequestEntityTooLarge,
	clientapi.CodeValueTooLarge:   http.StatusRequestEntityTooLarge,
	clientapi.CodeBadRequest:      http.StatusBadRequest,
	clientapi.CodeMembership:      http.StatusConflict,
	// The CSRF rule refuses an admin POST of a simple content type.
	clientapi.CodePermissionDenied: http.StatusForbidden,
	clientapi.CodeUnauthenticated:  http.StatusUnauthorized,
	clientapi.CodeLeaseNotFound:    http.StatusNotFound,
	clientapi.CodeLocked:           http.StatusConflict,
	clientapi.CodeNotLockHolder:    http.StatusConflict,
}

// FuzzHTTPRequest feeds bytes to net/http's request parser, as the server
// does, and every request it parses to the real handler over an in-memory
// backend holding "k" (a text, version 1) and "n" (an integer, version 2).
// See fuzzServeHTTP for the properties.
func FuzzHTTPRequest(f *testing.F) {
	for _, s := range []string{
		"GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/kv/a%2Fb/c HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nIf-Match: \"1\"\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /v1/kv/new HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nContent-Length: 1\r\n\r\nv",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nIf-Match: W/\"1\"\r\nContent-Length: 0\r\n\r\n",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"DELETE /v1/kv/k HTTP/1.1\r\nHost: x\r\nIf-Match: \"1\"\r\n\r\n",
		"POST /v1/kv/n?incr=-3 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"POST /v1/kv/n?incr=9223372036854775807 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/kv/k?incr=1&incr=2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/kv/k?x=%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/members HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\nn4=host:7080\n",
		"POST /v1/members HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 13\r\n\r\nn4=host:7080\n",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nContent-Length: 1\r\n\r\nv",
		"DELETE /v1/members/n2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/lock/k?lease=2a&wait=1ms&lock_delay=1s HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /v1/lock/k?lease=2a HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/election/k?wait=1ms&version=3 HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /v1/election/k?lease=2a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // the server answers 400 itself
		}
		fuzzServeHTTP(t, r)
	})
}

// FuzzHTTPKV builds the requests of the key-value routes from their
// parts, the key escaped as a client would, so that the fuzzer spends its
// time in the handlers' parsing rather than in net/http's.
func FuzzHTTPKV(f *testing.F) {
	f.Add(uint8(0), "k", "", "", "", []byte(nil))
	f.Add(uint8(1), "a/b", "", `"1"`, "", []byte("v"))
	f.Add(uint8(1), "k", "", `"1"`, "", []byte("v"))
	f.Add(uint8(1), "k", "", "", "*", []byte("v"))
	f.Add(uint8(1), "k", "", ` "18446744073709551615" `, "", []byte("v"))
	f.Add(uint8(2), "k", "", `"0"`, "", []byte(nil))
	f.Add(uint8(3), "n", "incr=5", "", "", []byte(nil))
	f.Add(uint8(3), "n", "incr=+1", "", "", []byte(nil))
	f.Add(uint8(3), "k", "incr=1", "", "", []byte(nil))
	f.Add(uint8(0), "\x00ключ", "a=b", "", "", []byte(nil))
	f.Add(uint8(0), "a/", "list&limit=3&after=a/b&keys", "", "", []byte(nil))
	f.Add(uint8(0), "", "list&limit=99999", "", "", []byte(nil))
	f.Add(uint8(0), "", "list", "", "", []byte(nil))
	f.Add(uint8(0), "", "list&limit=1&after=k", "", "", []byte(nil))
	f.Add(uint8(1), "k", "lease=1f", "", "", []byte("v"))
	f.Add(uint8(1), "k", "lease=a&lease=b", `"1"`, "", []byte("v"))
	f.Add(uint8(1), "c", "lease=0", "", "*", []byte("v"))
	f.Fuzz(func(t *testing.T, method uint8, key, query, ifMatch, ifNoneMatch string, body []byte) {
		methods := []string{"GET", "PUT", "DELETE", "POST"}
		u := &url.URL{Path: "/v1/kv/" + key, RawPath: "/v1/kv/" + url.PathEscape(key), RawQuery: query}
		r, err := http.NewRequest(methods[int(method)%len(methods)], u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		for name, v := range map[string]string{"If-Match": ifMatch, "If-None-Match": ifNoneMatch} {
			if v != "" {
				r.Header.Set(name, v)
			}
		}
		fuzzServeHTTP(t, r)
	})
}

// fuzzServeHTTP serves r and checks the answer:
//   - never a 5xx: the backend cannot fail, so any is a parsing bug;
//   - a refusal is the JSON error shape, with a code of the table and its
//     status (404 for an unknown route), and changes nothing stored;
//   - a success did what it says to the key named by the path: the stored
//     value is the body of a PUT, a DELETE leaves a tombstone, an increment
//     stores and answers the same number, a GET answers what is stored;
//     and the version answered is the one stored.
func fuzzServeHTTP(t *testing.T, r *http.Request) {
	t.Helper()
	b := clientapitest.New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do := func(op kv.Op) protocol.State {
		s, err := b.Do(ctx, op)
		if err != nil {
			t.Fatalf("backend %v: %v", op, err)
		}
		return s
	}
	do(kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("hello")})
	do(kv.Op{Kind: kv.OpPut, Key: "n", Value: []byte("1")})
	do(kv.Op{Kind: kv.OpPut, Key: "n", Value: []byte("5")})
	key, isKV := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	var before protocol.State
	if isKV && key != "" && len(key) <= fuzzLimits.MaxKeyBytes {
		before = do(kv.Op{Kind: kv.OpGet, Key: key})
	}
	desc := r.Method + " " + r.URL.String()
	// Read the body first, to know what a PUT stored; the handler reads
	// the same bytes, and then the same error, if any.
	sent, readErr := io.ReadAll(r.Body)
	if readErr != nil {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(sent), errAfter{readErr}))
	} else {
		r.Body = io.NopCloser(bytes.NewReader(sent))
	}

	w := httptest.NewRecorder()
	clientapi.NewHTTP(clientapi.HTTPConfig{Limits: fuzzLimits, RequestTimeout: 5 * time.Second}, b).ServeHTTP(w, r)
	resp := w.Result()
	body, _ := io.ReadAll(resp.Body)
	status := resp.StatusCode
	switch {
	case status >= 500:
		t.Fatalf("%s: %d %s", desc, status, body)
	case status == http.StatusMovedPermanently || status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect:
		// ServeMux's redirect to the cleaned path: the handlers never ran.
		if resp.Header.Get("Location") == "" {
			t.Fatalf("%s: %d without Location", desc, status)
		}
	case status >= 300:
		checkHTTPError(t, desc, resp, body)
	}
	if isKV && status == http.StatusOK && (r.Method == "GET" || r.Method == "HEAD") && r.URL.Query().Has("list") {
		checkHTTPList(t, desc, key, body, do)
		return
	}
	if !isKV || key == "" || len(key) > fuzzLimits.MaxKeyBytes {
		return
	}
	after := do(kv.Op{Kind: kv.OpGet, Key: key})
	if status != http.StatusOK {
		if !after.Equal(before) {
			t.Fatalf("%s answered %d %s, but changed %q from %v to %v", desc, status, body, key, before, after)
		}
		return
	}
	if r.Method == "PUT" && readErr != nil {
		t.Fatalf("%s: answered 200 to a body that failed to read (%v)", desc, readErr)
	}
	checkHTTPSuccess(t, desc, r.Method, resp, body, sent, after)
	checkHTTPLease(t, desc, r, resp, after)
}

// checkHTTPLease: a 200 PUT attached the key to its ?lease (none without
// one), and a 200 GET answers the stored lease.
func checkHTTPLease(t *testing.T, desc string, r *http.Request, resp *http.Response, after protocol.State) {
	t.Helper()
	switch r.Method {
	case "PUT":
		var want uint64
		if q := r.URL.Query(); q.Has("lease") {
			var err error
			if want, err = strconv.ParseUint(q.Get("lease"), 16, 64); err != nil || want == 0 {
				t.Fatalf("%s: answered 200 with a malformed lease", desc)
			}
		}
		if after.Lease != want {
			t.Fatalf("%s: the key is attached to %d, want %d", desc, after.Lease, want)
		}
	case "GET":
		want := ""
		if after.Lease != 0 {
			want = strconv.FormatUint(after.Lease, 16)
		}
		if got := resp.Header.Get(clientapi.LeaseHeader); got != want {
			t.Fatalf("%s: lease header %q, want %q", desc, got, want)
		}
	}
}

// checkHTTPList checks a 200 listing of prefix: the listing shape, every
// item a live key under the prefix with its stored version (and value,
// unless left out), in order.
func checkHTTPList(t *testing.T, desc, prefix string, body []byte, get func(kv.Op) protocol.State) {
	t.Helper()
	if len(body) == 0 {
		return // HEAD
	}
	var page struct {
		Items []struct {
			Key          string `json:"key"`
			KeyBase64    []byte `json:"key_b64"`
			Value        []byte `json:"value"`
			Version      uint64 `json:"version"`
			ValueOmitted bool   `json:"value_omitted"`
		} `json:"items"`
		More *bool `json:"more"`
	}
	if err := json.Unmarshal(body, &page); err != nil || page.More == nil {
		t.Fatalf("%s: listing %s is not the listing shape (%v)", desc, body, err)
	}
	last := ""
	for i, it := range page.Items {
		k := it.Key
		if it.KeyBase64 != nil {
			k = string(it.KeyBase64)
		}
		stored := get(kv.Op{Kind: kv.OpGet, Key: k})
		if !strings.HasPrefix(k, prefix) || (i > 0 && k <= last) || !stored.Exists() || stored.Version != it.Version ||
			(it.Value != nil && !bytes.Equal(it.Value, stored.Value)) {
			t.Fatalf("%s: listed %q@v%d (%q), stored %v", desc, k, it.Version, it.Value, stored)
		}
		last = k
	}
}

// checkHTTPError checks the JSON error shape and its status.
func checkHTTPError(t *testing.T, desc string, resp *http.Response, body []byte) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Current *uint64 `json:"current_version"`
		} `json:"error"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: error of Content-Type %q: %s", desc, ct, body)
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("%s: error body %s is not the error shape (%v)", desc, body, err)
	}
	want, ok := httpStatusOf[e.Error.Code]
	if e.Error.Code == clientapi.CodeBadRequest && resp.StatusCode == http.StatusNotFound {
		want = http.StatusNotFound // no such route
	}
	if !ok || resp.StatusCode != want {
		t.Fatalf("%s: %d with code %q; the table says %d", desc, resp.StatusCode, e.Error.Code, want)
	}
	if (e.Error.Code == clientapi.CodeVersionMismatch) != (e.Error.Current != nil) {
		t.Fatalf("%s: code %q with current_version %v", desc, e.Error.Code, e.Error.Current)
	}
}

// checkHTTPSuccess checks that a 200 on a key did what it answered.
func checkHTTPSuccess(t *testing.T, desc, method string, resp *http.Response, body, sent []byte, stored protocol.State) {
	t.Helper()
	var reply struct {
		Value   *int64 `json:"value"`
		Version uint64 `json:"version"`
	}
	if method == "HEAD" {
		method = "GET" // served by the GET route
	}
	if method != "GET" {
		if err := json.Unmarshal(body, &reply); err != nil || reply.Version != stored.Version {
			t.Fatalf("%s: answered %s (%v), stored version %d", desc, body, err, stored.Version)
		}
	}
	switch method {
	case "GET":
		if !bytes.Equal(body, stored.Value) || resp.Header.Get("ETag") != `"`+strconv.FormatUint(stored.Version, 10)+`"` {
			t.Fatalf("%s: answered %q ETag %s, stored %v", desc, body, resp.Header.Get("ETag"), stored)
		}
	case "PUT":
		if !stored.Exists() || !bytes.Equal(stored.Value, sent) {
			t.Fatalf("%s: stored %v, not the body", desc, stored)
		}
	case "DELETE":
		if !stored.Deleted {
			t.Fatalf("%s: answered 200, stored %v", desc, stored)
		}
	case "POST":
		if reply.Value == nil || string(stored.Value) != strconv.FormatInt(*reply.Value, 10) {
			t.Fatalf("%s: answered %s, stored %v", desc, body, stored)
		}
	}
}

// errAfter is a body's read error, returned after its bytes.
type errAfter struct{ err error }

func (e errAfter) Read([]byte) (int, error) { return 0, e.err }
