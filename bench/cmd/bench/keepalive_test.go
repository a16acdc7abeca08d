package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLeases is a lease store that expires a lease not renewed within ttl,
// for keepAliveLoad without a cluster; each renewal takes cost.
type fakeLeases struct {
	ttl, cost time.Duration
	mu        sync.Mutex
	expiry    map[int64]time.Time
	dead      map[int64]bool
	next      int64
}

func (f *fakeLeases) driver() keepAliveDriver {
	f.expiry, f.dead = map[int64]time.Time{}, map[int64]bool{}
	alive := func(id int64, now time.Time) bool {
		if f.dead[id] || now.After(f.expiry[id]) {
			f.dead[id] = true
		}
		return !f.dead[id]
	}
	return keepAliveDriver{
		grant: func(context.Context, int) (int64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.next++
			f.expiry[f.next] = time.Now().Add(f.ttl)
			return f.next, nil
		},
		renewer: func(context.Context, int, int) (func(context.Context, int64) (bool, error), func(), error) {
			return func(_ context.Context, id int64) (bool, error) {
				time.Sleep(f.cost) // the renewal's own cost, not a wait for anything
				f.mu.Lock()
				defer f.mu.Unlock()
				now := time.Now()
				if !alive(id, now) {
					return true, nil
				}
				f.expiry[id] = now.Add(f.ttl)
				return false, nil
			}, func() {}, nil
		},
		live: func(_ context.Context, id int64) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return alive(id, time.Now()), nil
		},
	}
}

// TestKeepAliveLoad: leases renewed well within their TTL are reported
// renewed and live, with no lease lost and a renewal gap below the TTL;
// leases renewed too slowly for their TTL are reported lost (the check
// the benchmark's "no lease expired" rests on).
func TestKeepAliveLoad(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ttl, cost time.Duration
		wantLost  bool
	}{
		{"kept alive", 2 * time.Second, 0, false},
		// 200 leases, 2 loops, 1 ms a renewal: each lease waits about
		// 100 ms between renewals, twice its TTL.
		{"too slow for the TTL", 50 * time.Millisecond, time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLeases{ttl: tc.ttl, cost: tc.cost}
			o := &keepAliveOptions{leases: 200, workers: 2, conns: 1, sample: 50, duration: 300 * time.Millisecond}
			res := &keepAliveResult{System: "fake", Path: "once"}
			if err := keepAliveLoad(context.Background(), o, f.driver(), &cluster{}, newProgress(io.Discard), res); err != nil {
				t.Fatal(err)
			}
			lost := res.Lost > 0 || res.CheckedLive < res.Checked
			if lost != tc.wantLost || res.Renewals == 0 || res.Checked != 50 || res.Errors != 0 {
				t.Fatalf("lost %v (want %v): %+v", lost, tc.wantLost, res)
			}
			if !tc.wantLost && (res.MaxGapS >= tc.ttl.Seconds() || res.MaxGapS == 0 || res.P50Ms < 0) {
				t.Fatalf("max gap %.3f s, TTL %v: %+v", res.MaxGapS, tc.ttl, res)
			}
			var b strings.Builder
			printKeepAliveTable(&b, &keepAliveReport{Runs: []*keepAliveResult{res}})
			if !strings.Contains(b.String(), "fake") {
				t.Fatalf("table lacks the run:\n%s", b.String())
			}
		})
	}
}
