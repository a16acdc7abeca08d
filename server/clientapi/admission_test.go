package clientapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// admissionNode serves b's HTTP and gRPC APIs sharing one Admission.
func admissionNode(t *testing.T, b clientapi.Backend, a *clientapi.Admission) (*httptest.Server, caspaxospb.KVClient) {
	t.Helper()
	hs := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits, Admission: a}, b))
	t.Cleanup(hs.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	clientapi.RegisterGRPC(gs, clientapi.GRPCConfig{Limits: kv.DefaultLimits, Admission: a}, b)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return hs, caspaxospb.NewKVClient(conn)
}

// Past the bound on requests in flight, every way in refuses at once with
// the overloaded code and applies nothing; within it, requests run.
func TestAdmissionRefusesPastBound(t *testing.T) {
	a, err := clientapi.NewAdmission(clientapi.AdmissionConfig{MaxInflightRequests: 2, RetryAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b := clientapitest.New()
	hs, kvc := admissionNode(t, b, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen, release := b.HoldWrites()
	// Two writes fill the bound: one over HTTP, one over gRPC.
	held := make(chan error, 2)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "PUT", hs.URL+"/v1/kv/held1", strings.NewReader("v"))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	go func() {
		_, err := kvc.Put(ctx, &caspaxospb.PutRequest{Key: []byte("held2"), Value: []byte("v")})
		held <- err
	}()
	<-seen
	<-seen
	refusals := []struct {
		name string
		do   func() (code string, detail string)
	}{
		{"http put", func() (string, string) {
			req, _ := http.NewRequestWithContext(ctx, "PUT", hs.URL+"/v1/kv/k", strings.NewReader("v"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			return body.Error.Code, resp.Status + " Retry-After " + resp.Header.Get("Retry-After")
		}},
		{"http get", func() (string, string) {
			resp, err := http.Get(hs.URL + "/v1/kv/k")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal(raw, &body)
			return body.Error.Code, resp.Status + " Retry-After " + resp.Header.Get("Retry-After")
		}},
		{"grpc put", func() (string, string) {
			_, err := kvc.Put(ctx, &caspaxospb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			if err == nil {
				return "", "applied"
			}
			code, info := errorInfo(t, err)
			return info.GetCode(), code.String()
		}},
		{"batch op", func() (string, string) {
			s, err := kvc.Batch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.CloseSend() }()
			if err := s.Send(&caspaxospb.BatchRequest{Ops: []*caspaxospb.Op{{Id: 1, Kind: caspaxospb.Op_PUT, Key: []byte("k"), Value: []byte("v")}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetResults()[0]
			return r.GetError().GetCode(), r.GetMessage()
		}},
	}
	wantDetail := map[string]string{
		"http put": "429 Too Many Requests Retry-After 3",
		"http get": "429 Too Many Requests Retry-After 3",
		"grpc put": codes.ResourceExhausted.String(),
	}
	for _, r := range refusals {
		code, detail := r.do()
		if code != clientapi.CodeOverloaded {
			t.Errorf("%s past the bound: code %q (%s), want %s", r.name, code, detail, clientapi.CodeOverloaded)
		}
		if want, ok := wantDetail[r.name]; ok && detail != want {
			t.Errorf("%s past the bound: %s, want %s", r.name, detail, want)
		}
	}
	release()
	for range 2 {
		if err := <-held; err != nil {
			t.Fatalf("held write: %v", err)
		}
	}
	// Nothing refused was applied; now requests run again.
	if _, err := kvc.Get(ctx, &caspaxospb.GetRequest{Key: []byte("k")}); err == nil {
		t.Fatal("a refused write was applied")
	}
	if _, err := kvc.Put(ctx, &caspaxospb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put within the bound: %v", err)
	}
	if ops, _ := a.Refused(); ops != uint64(len(refusals)) || a.Inflight() != 0 {
		t.Fatalf("refused %d ops (want %d), %d in flight (want 0)", ops, len(refusals), a.Inflight())
	}
}

// Connections past MaxConns are closed at once; one closed frees its place.
func TestAdmissionBoundsConnections(t *testing.T) {
	a, err := clientapi.NewAdmission(clientapi.AdmissionConfig{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := a.Listener(raw)
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { // echo until closed
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served reports whether the server echoes on c (false: it closed c).
	served := func(c net.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return false
		}
		buf := make([]byte, 1)
		_, err := c.Read(buf)
		return err == nil
	}
	c1, c2 := dial(), dial()
	steps := []struct {
		name string
		conn func() net.Conn
		want bool
	}{
		{"first", func() net.Conn { return c1 }, true},
		{"second", func() net.Conn { return c2 }, true},
		{"third, past the bound", dial, false},
		{"after one closed", func() net.Conn {
			c1.Close()
			for deadline := time.Now().Add(5 * time.Second); a.Conns() > 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a closed connection still counts")
				}
			}
			return dial()
		}, true},
	}
	for _, s := range steps {
		if got := served(s.conn()); got != s.want {
			t.Errorf("%s: served %v, want %v", s.name, got, s.want)
		}
	}
	if _, conns := a.Refused(); conns != 1 {
		t.Fatalf("refused %d connections, want 1", conns)
	}
}
