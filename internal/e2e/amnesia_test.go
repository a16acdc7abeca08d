package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/disktest"
)

// TestEmptiedMemberKeepsAcknowledgedWrite runs, with real processes and
// HTTP, the way a bootstrap member that lost its data directory used to
// lose an acknowledged write: n1 comes back empty under the same command
// line while the write lives on n2 alone. n1 must refuse to serve (saying
// what to do), the write must survive, and the operator path must bring n1
// back.
func TestEmptiedMemberKeepsAcknowledgedWrite(t *testing.T) {
	c := newCluster(t, 3)
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	put := func(i int, key, val string, header ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+c.procs[i].client+"/v1/kv/"+key, strings.NewReader(val))
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("PUT %s on %s: %v", key, c.procs[i].name, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(i int, key string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + c.procs[i].client + "/v1/kv/" + key)
		if err != nil {
			t.Fatalf("GET %s on %s: %v", key, c.procs[i].name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// 1. A write with all three up; n3 stops.
	if code := put(0, "other", "x"); code != 200 {
		t.Fatalf("PUT other: %d", code)
	}
	c.terminate(t, 2)
	// 2. A write acknowledged by n1 and n2.
	if code := put(0, "k", "acknowledged"); code != 200 {
		t.Fatalf("PUT k with n1 and n2 up: %d", code)
	}
	// 3. n1 stops, its directory is emptied, it starts with the same
	// flags; n3 starts; n2 stops.
	c.terminate(t, 0)
	disktest.Empty(t, c.procs[0].dir)
	c.start(0)
	logs := c.procs[0].logs
	c.start(2)
	c.terminate(t, 1)

	// n1 refuses to serve under the identity it lost, and says what to do.
	select {
	case <-c.procs[0].exited:
	case <-time.After(20 * time.Second):
		t.Fatal("n1, emptied, still runs 20s after its restart")
	}
	if code := c.procs[0].cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatal("n1, emptied, exited with status 0")
	}
	c.procs[0].cmd = nil
	if out := logs.String(); !strings.Contains(out, "members remove n1") || !strings.Contains(out, "--join") {
		t.Fatalf("n1's refusal does not say what to do:\n%s", out)
	}
	// 4. The write is not lost: n3 alone has no quorum, and once n2 is back
	// it reads the write.
	if code, _ := get(2, "k"); code == http.StatusNotFound || code == http.StatusOK {
		t.Fatalf("GET k on n3 with n1 refused and n2 down: %d, want no quorum", code)
	}
	c.start(1)
	c.waitHealth(2, 200)
	if code, v := get(2, "k"); code != 200 || v != "acknowledged" {
		t.Fatalf("GET k on n3 with n2 back: %d %q", code, v)
	}

	// The operator path: remove n1, start it with --join on an empty
	// directory, add it.
	c.change(1, "remove", "n1")
	disktest.Empty(t, c.procs[0].dir)
	c.startJoin(0)
	c.change(1, "add", "n1="+c.procs[0].peer)
	c.waitHealth(0, 200)
	if code, v := get(0, "k"); code != 200 || v != "acknowledged" {
		t.Fatalf("GET k on n1 added again: %d %q", code, v)
	}
	if code := put(0, "k", "again", "If-None-Match", "*"); code != http.StatusPreconditionFailed {
		t.Fatalf("a create-only PUT of k: %d, want 412", code)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
