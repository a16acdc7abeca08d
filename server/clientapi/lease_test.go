package clientapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestHTTPLeases: grant, get, keep-alive and revoke a lease over HTTP, and
// the refusals of bad TTLs and IDs and of a revoked lease.
func TestHTTPLeases(t *testing.T) {
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()))
	defer srv.Close()
	for _, tc := range []httpCase{
		{name: "grant", method: "POST", path: "/v1/lease?ttl=10s&id=2a", status: 200, want: `{"id":"2a","ttl_ms":10000,"state":"live"`},
		{name: "grant again", method: "POST", path: "/v1/lease?ttl=10s&id=2a", status: 409, code: clientapi.CodeLeaseExists},
		{name: "keepalive", method: "PUT", path: "/v1/lease/2a/keepalive", status: 200, want: `"state":"live"`},
		{name: "revoke", method: "DELETE", path: "/v1/lease/2a", status: 200, want: `"state":"revoked"`},
		{name: "keepalive revoked", method: "PUT", path: "/v1/lease/2a/keepalive", status: 404, code: clientapi.CodeLeaseNotFound},
		{name: "revoke again", method: "DELETE", path: "/v1/lease/2a", status: 404, code: clientapi.CodeLeaseNotFound},
		{name: "absent", method: "PUT", path: "/v1/lease/99/keepalive", status: 404, code: clientapi.CodeLeaseNotFound},
		{name: "ttl too short", method: "POST", path: "/v1/lease?ttl=1ms", status: 400, code: clientapi.CodeBadRequest},
		{name: "ttl malformed", method: "POST", path: "/v1/lease?ttl=ten", status: 400, code: clientapi.CodeBadRequest},
		{name: "id malformed", method: "PUT", path: "/v1/lease/xyz/keepalive", status: 400, code: clientapi.CodeBadRequest},
		{name: "reserved key over kv", method: "GET", path: "/v1/kv/%00lease/2a", status: 400, code: clientapi.CodeBadRequest},
	} {
		checkHTTP(t, srv.URL, tc)
	}
	// A granted lease without an ID gets one; GET shows it live.
	resp, err := srv.Client().Post(srv.URL+"/v1/lease?ttl=1s", "", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	var a clientapi.LeaseAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.ID == "" || a.State != "live" {
		t.Fatalf("grant without an ID: %+v, %v", a, err)
	}
	resp.Body.Close()
	resp, err = srv.Client().Get(srv.URL + "/v1/lease/" + a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var g clientapi.LeaseAnswer
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil || g.ID != a.ID || g.TTLMillis != 1000 || g.State != "live" {
		t.Fatalf("get: %+v, %v", g, err)
	}
	resp.Body.Close()
}
