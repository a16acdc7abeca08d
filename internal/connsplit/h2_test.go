package connsplit

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func isGRPC(ct string) bool { return strings.HasPrefix(ct, "application/grpc") }

// h2Port serves gRPC (the health service) and an HTTP handler with
// HTTP/1.1 and h2c on one address, split as the client port splits it.
func h2Port(t *testing.T, wait time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, []byte("PRI"), 5*time.Second)
	h2 := NewH2(s.Match, wait, isGRPC)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Proto+" "+r.Method+" "+string(body))
	})}
	go func() { _ = gs.Serve(h2.Match) }()
	go func() { _ = hs.Serve(h2.Other) }()
	go func() { _ = hs.Serve(s.Other) }()
	t.Cleanup(func() {
		s.Close()
		gs.Stop()
		hs.Close()
	})
	return l.Addr().String()
}

func TestH2SplitsGRPCFromH2C(t *testing.T) {
	addr := h2Port(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// gRPC, on a connection that is still taken for gRPC after many
	// calls.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range 3 {
		r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health check: %v, %v", r, err)
		}
	}

	for _, tc := range []struct {
		name  string
		h2c   bool
		proto string
	}{
		{"h2c with prior knowledge", true, "HTTP/2.0"},
		{"HTTP/1.1", false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{}
			if tc.h2c {
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				tr.Protocols = &p
			}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			// Several requests, some at once, on the connection the first
			// opened: past the split and its SETTINGS acknowledgement.
			errs := make(chan error, 8)
			for i := range 8 {
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/k", strings.NewReader("v"+string(rune('0'+i))))
					resp, err := hc.Do(req)
					if err != nil {
						errs <- err
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if want := tc.proto + " PUT v" + string(rune('0'+i)); string(b) != want {
						errs <- &answerError{got: string(b), want: want}
						return
					}
					errs <- nil
				}()
			}
			for range 8 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

type answerError struct{ got, want string }

func (e *answerError) Error() string { return "answer " + e.got + ", want " + e.want }

// TestH2IdleIsGRPC: a client that sends the preface and its SETTINGS and
// then no request is handed to Match once the wait is over, or at once if
// it pings (a gRPC client connects ahead of its first call and keeps the
// connection alive with pings), every byte it sent replayed.
func TestH2IdleIsGRPC(t *testing.T) {
	ping := string([]byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	for _, tc := range []struct {
		name string
		wait time.Duration
		sent string
	}{
		{"silent", 100 * time.Millisecond, http2.ClientPreface + string(emptySettings)},
		// The wait outlasts the test: only the ping can end it.
		{"pings", time.Hour, http2.ClientPreface + string(emptySettings) + ping},
	} {
		t.Run(tc.name, func(t *testing.T) { idleIsGRPC(t, tc.wait, tc.sent) })
	}
}

func idleIsGRPC(t *testing.T, wait time.Duration, sent string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2 := NewH2(l, wait, isGRPC)
	defer h2.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, sent); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(emptySettings))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(emptySettings) {
		t.Fatalf("the split's SETTINGS: %x, %v", got, err)
	}
	type accepted struct {
		conn net.Conn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		conn, err := h2.Match.Accept()
		ch <- accepted{conn, err}
	}()
	var conn net.Conn
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatal(a.err)
		}
		conn = a.conn
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not handed to Match within 10s")
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len(sent))
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != sent {
		t.Fatalf("replayed %q, %v; want %q", b, err, sent)
	}
}

// TestAckFilter drops the first SETTINGS acknowledgement only.
func TestAckFilter(t *testing.T) {
	ack := []byte{0, 0, 0, 0x4, 0x1, 0, 0, 0, 0}
	ping := []byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name     string
		in, want string
	}{
		{"ack after settings", http2.ClientPreface + string(emptySettings) + string(ack) + string(ping) + string(ack),
			http2.ClientPreface + string(emptySettings) + string(ping) + string(ack)},
		{"ack first", http2.ClientPreface + string(ack) + string(emptySettings), http2.ClientPreface + string(emptySettings)},
		{"no ack", http2.ClientPreface + string(ping) + string(emptySettings), http2.ClientPreface + string(ping) + string(emptySettings)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(&oneByte{newAckFilter(strings.NewReader(tc.in))})
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
			got, err = io.ReadAll(newAckFilter(strings.NewReader(tc.in)))
			if err != nil || string(got) != tc.want {
				t.Fatalf("in large reads: got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

// oneByte reads one byte at a time.
type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}
