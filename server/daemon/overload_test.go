package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
)

// TestOverloadLoad drives one node with many times more concurrent
// clients than its bound on requests in flight, over HTTP and gRPC, for a
// bounded time on loopback. It shows: refusals come as overloaded (429 /
// ErrOverloaded) and applied nothing; none is an unknown outcome; the heap
// stays bounded; and once the load stops the node serves fully again.
func TestOverloadLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		maxInflight = 16
		workers     = 20 * maxInflight // half HTTP, half gRPC
		loadFor     = 3 * time.Second
		valueBytes  = 1 << 10
		heapBound   = 512 << 20
	)
	c := newTestCluster(t, 1, func(cfg *Config) {
		cfg.Admission.MaxInflightRequests = maxInflight
		cfg.RequestTimeout = DefaultConfig().RequestTimeout
	})
	addr := c.cfgs[0].ClientAddr
	waitHealthy(t, addr, http.StatusOK)
	cl := c.client(t, 0)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	value := strings.Repeat("v", valueBytes)

	type outcome struct {
		key     string
		applied bool
	}
	var (
		mu        sync.Mutex
		outcomes  []outcome
		counts    = map[string]int{}
		heapMax   atomic.Uint64
		stopHeaps = make(chan struct{})
		heapsDone = make(chan struct{})
	)
	record := func(key, result string) {
		mu.Lock()
		defer mu.Unlock()
		counts[result]++
		switch result {
		case "ok":
			outcomes = append(outcomes, outcome{key, true})
		case "overloaded":
			outcomes = append(outcomes, outcome{key, false})
		}
	}
	go func() { // the heap, sampled while the load runs
		defer close(heapsDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stopHeaps:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > heapMax.Load() {
				heapMax.Store(ms.HeapAlloc)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), loadFor)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i) // every write its own key
				if w%2 == 0 {
					record(key, httpPut(hc, addr, key, value))
				} else {
					record(key, grpcPut(cl, key, value))
				}
			}
		}()
	}
	wg.Wait()
	close(stopHeaps)
	<-heapsDone
	t.Logf("%d workers against a bound of %d in flight for %v: %v; heap at most %d MiB",
		workers, maxInflight, loadFor, counts, heapMax.Load()>>20)
	if counts["overloaded"] == 0 {
		t.Fatalf("no request was refused as overloaded: %v", counts)
	}
	for _, bad := range []string{"unknown_outcome", "no_quorum", "other"} {
		if counts[bad] > 0 {
			t.Errorf("%d requests answered %s under overload: %v", counts[bad], bad, counts)
		}
	}
	if heapMax.Load() > heapBound {
		t.Errorf("heap reached %d MiB, bound %d MiB", heapMax.Load()>>20, heapBound>>20)
	}
	// The load is over: full service, and what was refused was not applied.
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	for i, o := range outcomes {
		if i%10 != 0 && !o.applied && i > 2000 {
			continue // a sample of the refused beyond the first 2000
		}
		_, err := cl.Get(rctx, o.key)
		switch {
		case o.applied && err != nil:
			t.Fatalf("write of %s was answered ok but reads %v", o.key, err)
		case !o.applied && !errors.Is(err, client.ErrNotFound):
			t.Fatalf("write of %s was refused as overloaded but reads %v", o.key, err)
		}
	}
	if n := c.daemons[0].admission.Inflight(); n != 0 {
		t.Fatalf("%d requests still counted in flight after the load", n)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("caspaxos_overloaded_total %d\n", counts["overloaded"]); !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q", want)
	}
	// Within the bound, every request is served.
	var after sync.WaitGroup
	errs := make(chan string, maxInflight*10)
	for w := range maxInflight / 2 {
		after.Add(1)
		go func() {
			defer after.Done()
			for i := range 10 {
				key := fmt.Sprintf("after-%d-%d", w, i)
				if got := httpPut(hc, addr, key, value); got != "ok" {
					errs <- "http " + got
				}
				if got := grpcPut(cl, key, value); got != "ok" {
					errs <- "grpc " + got
				}
			}
		}()
	}
	after.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("after the load, within the bound: %s", e)
	}
}

// httpPut writes key over HTTP and returns the outcome's code ("ok").
func httpPut(hc *http.Client, addr, key, value string) string {
	req, err := http.NewRequest("PUT", "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return "other"
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "other"
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return "ok"
	case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" && strings.Contains(string(body), `"overloaded"`):
		return "overloaded"
	case strings.Contains(string(body), "unknown_outcome"):
		return "unknown_outcome"
	case strings.Contains(string(body), "no_quorum"):
		return "no_quorum"
	}
	return "other"
}

// grpcPut writes key through the Go client and returns the outcome's code.
func grpcPut(cl *client.Client, key, value string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.Put(ctx, key, []byte(value))
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, client.ErrOverloaded):
		return "overloaded"
	case errors.Is(err, client.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, client.ErrNoQuorum):
		return "no_quorum"
	}
	return "other"
}
