package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH2CAndGRPCOnOnePort: the plain client port serves HTTP/2 cleartext
// with prior knowledge to HTTP clients, many requests at once on one
// connection, next to gRPC (the Go client) and HTTP/1.1.
func TestH2CAndGRPCOnOnePort(t *testing.T) {
	c := newTestCluster(t, 3)
	addr := c.cfgs[0].ClientAddr
	waitHealthy(t, addr, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.client(t, 0).Put(ctx, "grpc-key", []byte("v")); err != nil {
		t.Fatalf("gRPC on the port: %v", err)
	}

	for _, tc := range []struct {
		name  string
		h2c   bool
		major int
	}{
		{"h2c", true, 2},
		{"HTTP/1.1", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p http.Protocols
			p.SetHTTP1(!tc.h2c)
			p.SetUnencryptedHTTP2(tc.h2c)
			tr := &http.Transport{Protocols: &p}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			do := func(method, url, body string) (string, error) {
				req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
				if err != nil {
					return "", err
				}
				resp, err := hc.Do(req)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tc.major {
					return "", fmt.Errorf("%s %s: %s over %s: %s", method, url, resp.Status, resp.Proto, b)
				}
				return string(b), nil
			}
			const clients = 8
			errs := make(chan error, clients)
			for i := range clients {
				go func() {
					url := fmt.Sprintf("http://%s/v1/kv/%s/%d", addr, tc.name, i)
					want := fmt.Sprintf("value %d", i)
					_, err := do(http.MethodPut, url, want)
					var got string
					if err == nil {
						got, err = do(http.MethodGet, url, "")
					}
					if err == nil && got != want {
						err = fmt.Errorf("GET %s: %q, want %q", url, got, want)
					}
					errs <- err
				}()
			}
			for range clients {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
