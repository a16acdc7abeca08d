package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/internal/benchload"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// A short bench in each mode against the API front ends over an in-memory
// backend: every operation succeeds and the hot-key counter checks out.
func TestBenchModesSmoke(t *testing.T) {
	grpcAddr := serveAddr(t, clientapitest.New())
	// The node's HTTP server (NewHTTPServer): HTTP/1.1 and h2c.
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = clientapi.NewHTTPServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()), clientapi.HTTPTimeouts{}, nil)
	hs.Start()
	t.Cleanup(hs.Close)
	httpAddr := strings.TrimPrefix(hs.URL, "http://")
	for _, tt := range []struct{ mode, addr string }{{"grpc", grpcAddr}, {"http", httpAddr}, {"h2c", httpAddr}} {
		t.Run(tt.mode, func(t *testing.T) {
			r := runCLI(t, map[string]string{envEndpoints: tt.addr}, "", "-o", "json", "bench", "--mode", tt.mode,
				"--workloads", "put,get,incr", "--clients", "4", "--conns", "2", "--keys", "50",
				"--duration", "200ms", "--warmup", "0s")
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "("+tt.mode+")") {
				t.Errorf("stderr %q does not name the mode", r.stderr)
			}
			var results []benchload.Result
			if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
				t.Fatalf("%v in %q", err, r.stdout)
			}
			if len(results) != 3 {
				t.Fatalf("%d results, want 3", len(results))
			}
			for _, res := range results {
				if res.Ops == 0 || res.Errors != 0 || res.WarmupErrors != 0 {
					t.Errorf("%s: %d ops, %d errors (%s), %d warm-up errors", res.Workload, res.Ops, res.Errors, res.FirstError, res.WarmupErrors)
				}
				if res.Workload == benchload.Incr && (res.Counter == nil || !res.Counter.OK || res.Counter.Final == 0) {
					t.Errorf("incr: counter check %+v", res.Counter)
				}
			}
		})
	}
}
