package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// sseEvent is one event of GET /v1/watch/{prefix}.
type sseEvent struct {
	Key         string `json:"key"`
	Version     uint64 `json:"version"`
	PrevVersion uint64 `json:"prev_version"`
	Value       []byte `json:"value"`
	Deleted     bool   `json:"deleted"`
}

// sseStream follows a prefix's event stream, keeping the last event per
// key and checking that versions only rise.
type sseStream struct {
	t    *testing.T
	mu   sync.Mutex
	last map[string]sseEvent
	done chan struct{}
}

func openStream(t *testing.T, ctx context.Context, base, prefix, token string) *sseStream {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/watch/"+prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch %q: %d %s", prefix, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{t: t, last: map[string]sseEvent{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev sseEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Errorf("event %q: %v", line, err)
				return
			}
			s.mu.Lock()
			if prev, ok := s.last[ev.Key]; ok && ev.Version != 0 && ev.Version <= prev.Version {
				t.Errorf("%s went from version %d to %d", ev.Key, prev.Version, ev.Version)
			}
			s.last[ev.Key] = ev
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sseStream) wait(key, value string, deleted bool) {
	s.t.Helper()
	servertest.WaitFor(s.t, fmt.Sprintf("%s = %q (deleted %v) on the stream", key, value, deleted), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ev, ok := s.last[key]
		return ok && ev.Deleted == deleted && string(ev.Value) == value
	})
}

func (s *sseStream) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.last[key]
	return ok
}

// TestWatchHTTP: a prefix's event stream and a key's long poll, on
// different nodes than the writes; with auth, a watch needs read
// permission and a stream shows only the keys the caller may read.
func TestWatchHTTP(t *testing.T) {
	// A short write timeout: the event stream must outlive it (it lifts
	// its own deadline), and so must a long poll (it sets its own).
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HTTP.WriteTimeout = 300 * time.Millisecond })
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client(t, 2)
	if _, err := cl.Put(ctx, "app/a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	base0, base1 := "http://"+c.cfgs[0].ClientAddr, "http://"+c.cfgs[1].ClientAddr
	s := openStream(t, ctx, base0, "app/", "")
	s.wait("app/a", "a1", false) // the stream starts with the current state
	if _, err := cl.Put(ctx, "app/b", []byte("b1")); err != nil {
		t.Fatal(err)
	}
	s.wait("app/b", "b1", false)
	if _, err := cl.Delete(ctx, "app/a", 0); err != nil {
		t.Fatal(err)
	}
	s.wait("app/a", "", true)
	if _, err := cl.Put(ctx, "other", []byte("o")); err != nil {
		t.Fatal(err)
	}

	// A long poll: at once when the version is above the asked one; else
	// once a write makes it so.
	st, err := cl.Get(ctx, "app/b")
	if err != nil {
		t.Fatal(err)
	}
	code, out := authHTTP(t, "GET", fmt.Sprintf("%s/v1/kv/app/b?wait=20s&version=%d", base1, st.Version-1), "", "", "")
	if code != http.StatusOK || out != "b1" {
		t.Fatalf("long poll below the version: %d %q", code, out)
	}
	type answer struct {
		code int
		out  string
	}
	got := make(chan answer, 1)
	go func() {
		code, out := authHTTP(t, "GET", fmt.Sprintf("%s/v1/kv/app/b?wait=20s&version=%d", base1, st.Version), "", "", "")
		got <- answer{code, out}
	}()
	servertest.WaitFor(t, "the long poll to watch", func() bool { return c.daemons[1].watches.Whole() })
	if _, err := cl.Put(ctx, "app/b", []byte("b2")); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.code != http.StatusOK || a.out != "b2" {
		t.Fatalf("long poll: %d %q, want b2", a.code, a.out)
	}
	// The wait's end (past the write timeout): the current state.
	code, out = authHTTP(t, "GET", base1+"/v1/kv/app/b?wait=1s&version=1000", "", "", "")
	if code != http.StatusOK || out != "b2" {
		t.Fatalf("long poll to its end: %d %q", code, out)
	}
	// The stream, open for longer than the write timeout, still flows.
	if _, err := cl.Put(ctx, "app/c", []byte("c1")); err != nil {
		t.Fatal(err)
	}
	s.wait("app/c", "c1", false)
	for _, q := range []string{"wait=x", "wait=1s&version=-1", "wait=1s&bogus=1"} {
		if code, out := authHTTP(t, "GET", base1+"/v1/kv/app/b?"+q, "", "", ""); code != http.StatusBadRequest {
			t.Fatalf("long poll ?%s: %d %s, want 400", q, code, out)
		}
	}

	// With auth.
	setupAuth(t, base0)
	reader := login(t, base0, "reader", "readerpw")
	if code, out := authHTTP(t, "GET", base0+"/v1/kv/other?wait=1ms", reader, "", ""); code != http.StatusForbidden {
		t.Fatalf("the reader's long poll of other: %d %s, want 403", code, out)
	}
	if code, out := authHTTP(t, "GET", base0+"/v1/kv/other?wait=1ms", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("an anonymous long poll: %d %s, want 401", code, out)
	}
	if code, out := authHTTP(t, "GET", base0+"/v1/watch/app/", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("an anonymous stream: %d %s, want 401", code, out)
	}
	if code, out := authHTTP(t, "GET", base0+"/v1/kv/app/b?wait=1ms", reader, "", ""); code != http.StatusOK || out != "b2" {
		t.Fatalf("the reader's long poll of app/b: %d %s", code, out)
	}
	rs := openStream(t, ctx, base0, "", reader)
	rs.wait("app/b", "b2", false)
	if rs.has("other") {
		t.Fatal("the reader's stream showed a key it may not read")
	}
}

// TestWatchGRPC: the Go client's watch (KV.Watch) on every node, with keys
// and a prefix, while a node stops and starts again: every watcher ends
// with the last state of every key, versions only rise, and the watcher
// whose node stopped moves to another.
func TestWatchGRPC(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var endpoints []string
	for _, cfg := range c.cfgs {
		endpoints = append(endpoints, cfg.ClientAddr)
	}
	type seen struct {
		mu   sync.Mutex
		last map[string]client.WatchEvent
	}
	watchers := make([]*seen, 3)
	for i := range watchers {
		// Each watcher starts at node i, and may move to the others.
		cl, err := client.New(client.Config{Endpoints: append(append([]string(nil), endpoints[i:]...), endpoints[:i]...)})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		s := &seen{last: map[string]client.WatchEvent{}}
		watchers[i] = s
		go func() {
			for ev, err := range cl.Watch(ctx, []string{"k"}, client.WatchOptions{Prefixes: []string{"p/"}}) {
				if err != nil {
					t.Errorf("watcher %d: %v", i, err)
					return
				}
				s.mu.Lock()
				if prev, ok := s.last[ev.Key]; ok && (ev.Version != 0 && ev.Version <= prev.Version || ev.PrevVersion != prev.Version) {
					t.Errorf("watcher %d: %s went from %d to %d (prev %d)", i, ev.Key, prev.Version, ev.Version, ev.PrevVersion)
				}
				s.last[ev.Key] = ev
				s.mu.Unlock()
			}
		}()
	}
	w := c.client(t, 1)
	want := map[string]string{}
	put := func(k, v string) {
		t.Helper()
		for {
			_, err := w.Put(ctx, k, []byte(v))
			if err == nil {
				want[k] = v
				return
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 5 {
		put("k", fmt.Sprint("k", i))
		put(fmt.Sprint("p/", i%3), fmt.Sprint("p", i))
	}
	c.stop(0)
	for i := 5; i < 10; i++ {
		put("k", fmt.Sprint("k", i))
		put(fmt.Sprint("p/", i%3), fmt.Sprint("p", i))
	}
	c.start(t, 0)
	put("k", "last")
	for i, s := range watchers {
		servertest.WaitFor(t, fmt.Sprintf("watcher %d to see every key's last state", i), func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			for k, v := range want {
				if ev := s.last[k]; string(ev.Value) != v || ev.Deleted {
					return false
				}
			}
			return true
		})
	}
}
