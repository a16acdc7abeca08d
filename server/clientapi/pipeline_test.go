package clientapi_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestHTTPPipelined: requests a keep-alive client sends back to back in one
// write, before any answer, are all answered, in order, on the connection.
func TestHTTPPipelined(t *testing.T) {
	srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	reqs := []struct{ raw, want string }{
		{"PUT /v1/kv/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", `{"version":1}` + "\n"},
		{"POST /v1/kv/n?incr=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `{"value":3,"version":1}` + "\n"},
		{"GET /v1/kv/p HTTP/1.1\r\nHost: x\r\n\r\n", "hi"},
		{"POST /v1/kv/n?incr=4 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `{"value":7,"version":2}` + "\n"},
		{"DELETE /v1/kv/p HTTP/1.1\r\nHost: x\r\n\r\n", `{"version":2}` + "\n"},
	}
	var all strings.Builder
	for _, r := range reqs {
		all.WriteString(r.raw)
	}
	if _, err := io.WriteString(conn, all.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != r.want {
			t.Fatalf("answer %d: %d %q %v, want 200 %q", i, resp.StatusCode, body, err, r.want)
		}
	}
}
