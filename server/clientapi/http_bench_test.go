package clientapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// BenchmarkHTTPHandler measures the HTTP API's own cost per key operation
// (routing, parsing, answering) over an in-memory backend, without a
// connection: `go test -run - -bench HTTPHandler -benchmem ./server/clientapi`.
func BenchmarkHTTPHandler(b *testing.B) {
	value := strings.Repeat("v", 256)
	for _, bc := range []struct {
		name, method, target, body string
	}{
		{"put", http.MethodPut, "/v1/kv/bench/key-1", value},
		{"get", http.MethodGet, "/v1/kv/bench/key-1", ""},
		{"incr", http.MethodPost, "/v1/kv/bench/counter?incr=1", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New())
			put := httptest.NewRequest(http.MethodPut, "/v1/kv/bench/key-1", strings.NewReader(value))
			h.ServeHTTP(httptest.NewRecorder(), put)
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(bc.method, bc.target, strings.NewReader(bc.body))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s %s: %d %s", bc.method, bc.target, w.Code, w.Body)
				}
			}
		})
	}
}
