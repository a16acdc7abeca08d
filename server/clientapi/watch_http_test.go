package clientapi

import (
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
)

func TestLongPollQuery(t *testing.T) {
	tests := []struct {
		query   string
		wait    time.Duration
		version uint64
		ok      bool
	}{
		{"wait=", kv.DefaultWatchWait, 0, true},
		{"wait=5s&version=7", 5 * time.Second, 7, true},
		{"wait=1h", kv.MaxWatchWait, 0, true},
		{"wait=0s&version=0", kv.DefaultWatchWait, 0, true},
		{"wait=-1s", 0, 0, false},
		{"wait=x", 0, 0, false},
		{"wait=1s&version=-3", 0, 0, false},
		{"wait=1s&version=18446744073709551616", 0, 0, false},
		{"wait=1s&list", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			wait, version, err := longPollQuery(httptest.NewRequest("GET", "/v1/kv/k?"+tt.query, nil))
			if (err == nil) != tt.ok || tt.ok && (wait != tt.wait || version != tt.version) {
				t.Fatalf("longPollQuery(%q) = %v, %d, %v; want %v, %d, ok %v", tt.query, wait, version, err, tt.wait, tt.version, tt.ok)
			}
		})
	}
}

// FuzzLongPollQuery: any query either fails as a bad request or gives a
// wait within (0, MaxWatchWait].
func FuzzLongPollQuery(f *testing.F) {
	for _, s := range []string{"wait=30s&version=4", "wait=", "wait=1h&version=0", "wait=%zz", "version=1&wait=-0", "wait=1e9s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/v1/kv/k", nil)
		r.URL.RawQuery = raw
		if _, err := url.ParseQuery(raw); err != nil {
			return // net/http would have dropped the malformed pairs; nothing of ours to check
		}
		wait, _, err := longPollQuery(r)
		if err == nil && (wait <= 0 || wait > kv.MaxWatchWait) {
			t.Fatalf("query %q: wait %v outside (0, %v]", raw, wait, kv.MaxWatchWait)
		}
	})
}
