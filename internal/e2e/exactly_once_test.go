package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
)

// TestExactlyOnceAcrossSIGKILL: clients increment counters while a node is
// SIGKILLed under them. Writes cut off in flight end, for the Go client,
// with an unknown outcome, and are retried with their request ID; each
// counter then equals the number of increments its callers saw succeed:
// none was applied twice, none lost. Under each setup; under tls+auth the
// outcome query also checks the write permission.
func TestExactlyOnceAcrossSIGKILL(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testExactlyOnceAcrossSIGKILL(t, s) })
	}
}

func testExactlyOnceAcrossSIGKILL(t *testing.T, s setup) {
	c := newClusterWith(t, 3, s, "eo-")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	cl := c.client(0, 1, 2)
	const writers = 8
	var mu sync.Mutex
	ok := make([]int, writers)
	var failed []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := cl.Increment(ctx, fmt.Sprintf("eo-%d", w), 1)
				cancel()
				mu.Lock()
				if err == nil {
					ok[w]++
				} else {
					failed = append(failed, err)
				}
				mu.Unlock()
			}
		}()
	}
	// Some increments before the kill, some after.
	waitFor := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			total := 0
			for _, k := range ok {
				total += k
			}
			mu.Unlock()
			if total >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d increments in 30s", total)
			}
			waitUntil(time.Now().Add(10 * time.Millisecond))
		}
	}
	waitFor(200)
	c.kill(0)
	c.waitUnreachable(1, "n1")
	waitFor(600)
	close(stop)
	wg.Wait()
	for _, err := range failed {
		t.Errorf("an increment failed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	survivors := c.client(1, 2)
	for w := range writers {
		v, err := survivors.Get(ctx, fmt.Sprintf("eo-%d", w))
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(string(v.Data)); n != ok[w] {
			t.Errorf("eo-%d is %d after %d acknowledged increments", w, n, ok[w])
		}
	}

	// The outcome query: an ID never used is not applied (and stays so);
	// outside the user's keys it is refused under auth.
	id, _ := kv.NewRequestID(time.Now(), rand.Reader)
	if applied, _, err := survivors.Outcome(ctx, "eo-0", id); err != nil || applied {
		t.Fatalf("outcome of an unused ID: %v, %v", applied, err)
	}
	_, _, err := survivors.Outcome(ctx, "other", id)
	switch {
	case s.secure && !errors.Is(err, client.ErrPermissionDenied):
		t.Fatalf("outcome query outside the user's keys: %v, want permission denied", err)
	case !s.secure && err != nil:
		t.Fatalf("outcome query: %v", err)
	}
}
