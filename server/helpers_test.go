package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// testCluster is n nodes on a Local network, each with an in-memory store.
type testCluster struct {
	net    *Local
	nodes  []*Node
	stores []*storage.Memory
}

func fastConfig(id protocol.NodeID, acceptors protocol.Config) Config {
	return Config{
		ID:             id,
		Acceptors:      acceptors,
		AttemptTimeout: 30 * time.Millisecond,
		ReadTimeout:    20 * time.Millisecond,
		BackoffBase:    time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
		RandSeed:       uint64(id),
	}
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	ids := make([]protocol.NodeID, n)
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	acceptors := protocol.Majority(1, ids...)
	c := &testCluster{net: NewLocal()}
	for _, id := range ids {
		st := storage.NewMemory()
		ep := c.net.Endpoint(id)
		node, err := NewNode(fastConfig(id, acceptors), st, ep, ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.net.Add(node); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
		c.stores = append(c.stores, st)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.Stop()
		}
	})
	return c
}

func (c *testCluster) node(id protocol.NodeID) *Node { return c.nodes[id-1] }

// keyHomedAt returns a key whose home is id.
func keyHomedAt(t *testing.T, id protocol.NodeID, members []protocol.NodeID) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("key-%d", i)
		if Home(k, members) == id {
			return k
		}
	}
	t.Fatalf("no key homed at %d", id)
	return ""
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recorder is a Transport that keeps what is sent, in order.
type recorder struct {
	mu    sync.Mutex
	sent  [][]protocol.Message
	check func(to protocol.NodeID, msgs []protocol.Message)
	ch    chan []protocol.Message
}

func newRecorder() *recorder { return &recorder{ch: make(chan []protocol.Message, 1024)} }

func (r *recorder) Send(to protocol.NodeID, msgs []protocol.Message) error {
	if r.check != nil {
		r.check(to, msgs)
	}
	r.mu.Lock()
	r.sent = append(r.sent, msgs)
	r.mu.Unlock()
	r.ch <- msgs
	return nil
}

// next returns the next batch sent, failing the test after a deadline.
func (r *recorder) next(t *testing.T) []protocol.Message {
	t.Helper()
	select {
	case msgs := <-r.ch:
		return msgs
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a send")
		return nil
	}
}

// nextN returns the next n replies, however many sends carry them.
func (r *recorder) nextN(t *testing.T, n int) []protocol.Message {
	t.Helper()
	var out []protocol.Message
	for len(out) < n {
		out = append(out, r.next(t)...)
	}
	if len(out) > n {
		t.Fatalf("got %d replies, want %d: %v", len(out), n, out)
	}
	return out
}

// none fails the test if a batch was sent that nobody took yet.
func (r *recorder) none(t *testing.T, why string) {
	t.Helper()
	select {
	case msgs := <-r.ch:
		t.Fatalf("%s, but sent %v", why, msgs)
	default:
	}
}
