package clientapi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// Slow clients (slowloris) are cut off by the HTTP server's timeouts,
// while other clients are served all along.
func TestHTTPSlowClientsCutOff(t *testing.T) {
	timeouts := clientapi.HTTPTimeouts{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 400 * time.Millisecond,
		IdleTimeout: 300 * time.Millisecond}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := clientapi.NewHTTPServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, clientapitest.New()), timeouts, nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	addr := lis.Addr().String()
	tests := []struct {
		name string
		head string // sent at once
		drip string // then sent a byte every 20ms, never finished
	}{
		{"headers a byte at a time", "", "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)},
		{"body a byte at a time", "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", strings.Repeat("b", 1000)},
		{"idle after a request", "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"silent", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() { // the slow client
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for i := 0; i < len(tt.drip); i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := c.Write([]byte{tt.drip[i]}); err != nil {
						return
					}
				}
			}()
			// Meanwhile, another client is served.
			resp, err := http.Get("http://" + addr + "/v1/health")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("another client: %s", resp.Status)
			}
			// The slow one is cut off: the server closes its connection
			// (after an answer to what it sent, if any).
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the slow client still holds its connection after 5s")
			}
		})
	}
}

// slowChanger is a membership change that takes until release is closed.
type slowChanger struct {
	*clientapitest.Backend
	release chan struct{}
}

func (c *slowChanger) AddMember(ctx context.Context, _, _ string) error {
	select {
	case <-c.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *slowChanger) RemoveMember(ctx context.Context, name string) error {
	return c.AddMember(ctx, name, "")
}

// A membership change answers once done, even past the server's
// WriteTimeout (which bounds the key operations' answers).
func TestHTTPMemberChangeOutlivesWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	b := &slowChanger{Backend: clientapitest.New(), release: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := clientapi.NewHTTPServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: kv.DefaultLimits}, b),
		clientapi.HTTPTimeouts{WriteTimeout: writeTimeout}, nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	start := time.Now()
	go func() { // the change ends well after the write timeout
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if time.Since(start) > 3*writeTimeout {
				close(b.release)
				return
			}
		}
	}()
	resp, err := http.Post("http://"+lis.Addr().String()+"/v1/members", "application/octet-stream", strings.NewReader("n4=127.0.0.1:7083"))
	if err != nil {
		t.Fatalf("member add past the write timeout: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("member add: %s", resp.Status)
	}
}
