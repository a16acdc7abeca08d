package clientapi_test

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

func newRequestID(t *testing.T, at time.Time) string {
	t.Helper()
	id, err := kv.NewRequestID(at, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestHTTPIdempotencyKey: a write repeated with its Idempotency-Key is
// answered with its first outcome and applied once; the outcome query
// tells applied from not applied, and a write it declared not applied is
// refused afterwards; bad and stale keys are refused clearly.
func TestHTTPIdempotencyKey(t *testing.T) {
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()))
	defer srv.Close()
	now := time.Now()
	incr, put, del, lost := newRequestID(t, now), newRequestID(t, now), newRequestID(t, now), newRequestID(t, now)
	key := func(id string) map[string]string { return map[string]string{clientapi.IdempotencyKeyHeader: id} }
	for _, tc := range []httpCase{
		{name: "incr", method: "POST", path: "/v1/kv/n?incr=5", header: key(incr), status: 200, want: `{"value":5,"version":1}`},
		{name: "incr repeated", method: "POST", path: "/v1/kv/n?incr=5", header: key(incr), status: 200, want: `{"value":5,"version":1}`},
		{name: "incr, another ID", method: "POST", path: "/v1/kv/n?incr=1", header: key(newRequestID(t, now)), status: 200, want: `{"value":6,"version":2}`},
		{name: "incr repeated after", method: "POST", path: "/v1/kv/n?incr=5", header: key(incr), status: 200, want: `"version":1`},
		{name: "put", method: "PUT", path: "/v1/kv/k", body: "a", header: key(put), status: 200, want: `{"version":1}`},
		{name: "put repeated", method: "PUT", path: "/v1/kv/k", body: "a", header: key(put), status: 200, want: `{"version":1}`},
		{name: "delete", method: "DELETE", path: "/v1/kv/k", header: key(del), status: 200, want: `{"version":2}`},
		{name: "delete repeated", method: "DELETE", path: "/v1/kv/k", header: key(del), status: 200, want: `{"version":2}`},
		{name: "not a uuid", method: "PUT", path: "/v1/kv/k", body: "a", header: key("abc"), status: 400, code: clientapi.CodeBadRequest},
		{name: "uuid v4", method: "PUT", path: "/v1/kv/k", body: "a", header: key("0190a1b2-c3d4-4e5f-8a6b-7c8d9e0f1a2b"), status: 400, code: clientapi.CodeBadRequest},
		{name: "expired", method: "PUT", path: "/v1/kv/k", body: "a", header: key(newRequestID(t, now.Add(-kv.DefaultIdempotencyWindow-time.Minute))), status: 422, code: clientapi.CodeRequestExpired},
		{name: "from the future", method: "PUT", path: "/v1/kv/k", body: "a", header: key(newRequestID(t, now.Add(time.Hour))), status: 422, code: clientapi.CodeRequestFromFuture},
	} {
		checkHTTP(t, srv.URL, tc)
	}
	for _, tc := range []struct {
		name, key, id string
		want          clientapi.OutcomeAnswer
	}{
		{"applied", "n", incr, clientapi.OutcomeAnswer{RequestID: incr, Applied: true, Version: 1}},
		{"applied delete", "k", del, clientapi.OutcomeAnswer{RequestID: del, Applied: true, Version: 2}},
		{"never seen", "k", lost, clientapi.OutcomeAnswer{RequestID: lost}},
		{"asked again", "k", lost, clientapi.OutcomeAnswer{RequestID: lost}},
	} {
		if got := getOutcome(t, srv.URL+"/v1/kv/"+tc.key+"?request_id="+tc.id); got != tc.want {
			t.Fatalf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	checkHTTP(t, srv.URL, httpCase{name: "late attempt after not applied", method: "PUT", path: "/v1/kv/k", body: "late", header: key(lost), status: 409, code: clientapi.CodeRequestNotApplied})
	checkHTTP(t, srv.URL, httpCase{name: "outcome of a bad ID", method: "GET", path: "/v1/kv/k?request_id=nope", status: 400, code: clientapi.CodeBadRequest})
}

func getOutcome(t *testing.T, url string) clientapi.OutcomeAnswer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a clientapi.OutcomeAnswer
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return a
}
