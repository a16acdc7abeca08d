package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
)

// TestWatchUnderFaults runs watchers on every node (the Go client, each
// starting at its own node, and `caspaxos watch --prefix` as a process)
// while a writer changes and deletes keys, a node is SIGKILLed and
// restarted, and a membership change adds and removes a node. Every
// watcher must end with the final state of every key; versions only rise;
// every value delivered is one the writer wrote to that key. It runs under
// each setup ({plain, tls+auth}).
func TestWatchUnderFaults(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testWatchUnderFaults(t, s) })
	}
}

// watchLog is what one watcher saw.
type watchLog struct {
	name string
	mu   sync.Mutex
	last map[string]client.WatchEvent
	errs []string
}

func (l *watchLog) add(ev client.WatchEvent, written func(key, value string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.last[ev.Key]; ok && ev.Version != 0 && ev.Version <= prev.Version {
		l.errs = append(l.errs, fmt.Sprintf("%s: version went from %d to %d", ev.Key, prev.Version, ev.Version))
	}
	if !ev.Deleted && !written(ev.Key, string(ev.Value)) {
		l.errs = append(l.errs, fmt.Sprintf("%s: value %q was never written", ev.Key, ev.Value))
	}
	l.last[ev.Key] = ev
}

func testWatchUnderFaults(t *testing.T, s setup) {
	c := newClusterWith(t, 3, s, "w/")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	issued := map[string]map[string]bool{}
	written := func(key, value string) bool {
		mu.Lock()
		defer mu.Unlock()
		return issued[key][value]
	}

	var logs []*watchLog
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the watchers end with ctx
	for i := range c.procs {
		order := []int{i, (i + 1) % 3, (i + 2) % 3}
		cl := c.client(order...)
		l := &watchLog{name: fmt.Sprintf("client watcher at %s", c.procs[i].name), last: map[string]client.WatchEvent{}}
		logs = append(logs, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev, err := range cl.Watch(ctx, []string{"w/k"}, client.WatchOptions{Prefixes: []string{"w/p/"}}) {
				if err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, err.Error())
					l.mu.Unlock()
					return
				}
				l.add(ev, written)
			}
		}()
	}
	if c.sec != nil {
		// A watch needs read permission: app may read w/ only.
		for _, err := range c.client(0).Watch(ctx, []string{"other"}, client.WatchOptions{}) {
			if !errors.Is(err, client.ErrPermissionDenied) {
				t.Fatalf("app's watch of other: %v, want permission denied", err)
			}
			break
		}
	}
	cli := startCLIWatch(t, ctx, c, &wg, written)
	logs = append(logs, cli)

	w := c.client(0, 1, 2)
	seq := 0
	keys := []string{"w/k", "w/p/a", "w/p/b", "w/p/c"}
	step := func(n int) {
		t.Helper()
		for range n {
			seq++
			key := keys[seq%len(keys)]
			opCtx, opCancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if seq%7 == 3 {
				_, err = w.Delete(opCtx, key, 0)
				if errors.Is(err, client.ErrNotFound) {
					err = nil
				}
			} else {
				v := fmt.Sprintf("%s=%d", key, seq)
				mu.Lock()
				if issued[key] == nil {
					issued[key] = map[string]bool{}
				}
				issued[key][v] = true
				mu.Unlock()
				_, err = w.Put(opCtx, key, []byte(v))
			}
			opCancel()
			if err != nil && !errors.Is(err, client.ErrUnknownOutcome) && !errors.Is(err, client.ErrNoQuorum) && !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("write %d: %v", seq, err)
			}
		}
	}
	step(20)
	c.kill(0)
	step(20)
	c.start(0)
	c.waitHealth(0, 200)
	step(10)
	n4 := c.startJoiner("n4")
	c.change(1, "add", "n4="+c.procs[n4].peer)
	step(10)
	c.change(1, "remove", "n4")
	c.waitRemovedExit(n4)
	step(10)

	// The final state of every key, read linearizably.
	final := map[string]client.Value{}
	for _, k := range keys {
		for {
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			v, err := w.Get(rctx, k)
			rcancel()
			if err == nil || errors.Is(err, client.ErrNotFound) {
				if err == nil {
					final[k] = v
				}
				break
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, l := range logs {
		for {
			missing := ""
			l.mu.Lock()
			for _, k := range keys {
				ev, seen := l.last[k]
				v, live := final[k]
				switch {
				case live && (!seen || ev.Deleted || ev.Version != v.Version || string(ev.Value) != string(v.Data)):
					missing = fmt.Sprintf("%s: last saw %+v, final %q@%d", k, ev, v.Data, v.Version)
				case !live && seen && !ev.Deleted:
					missing = fmt.Sprintf("%s: last saw %q@%d, final deleted", k, ev.Value, ev.Version)
				}
			}
			errs := append([]string(nil), l.errs...)
			l.mu.Unlock()
			if len(errs) > 0 {
				t.Fatalf("%s: %v", l.name, errs)
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the final state: %s", l.name, missing)
			}
			waitUntil(time.Now().Add(20 * time.Millisecond))
		}
	}
	t.Logf("%d writes; %d watchers ended with the final state of %d keys", seq, len(logs), len(keys))
}

// startCLIWatch runs `caspaxos watch --prefix w/ -o json` against node 1
// (then the others) and records its lines.
func startCLIWatch(t *testing.T, ctx context.Context, c *cluster, wg *sync.WaitGroup, written func(key, value string) bool) *watchLog {
	t.Helper()
	eps := c.procs[1].client + "," + c.procs[2].client + "," + c.procs[0].client
	args := append([]string{"--endpoints", eps}, c.cliFlags(false)...)
	if c.sec != nil {
		args = append(args, "--user", appUser+":"+appPassword)
	}
	args = append(args, "watch", "--prefix", "w/", "-o", "json")
	cmd := exec.CommandContext(ctx, binaryPath, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &watchLog{name: "caspaxos watch --prefix w/", last: map[string]client.WatchEvent{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var j struct {
				Key         string `json:"key"`
				Value       string `json:"value"`
				Version     uint64 `json:"version"`
				PrevVersion uint64 `json:"prev_version"`
				Deleted     bool   `json:"deleted"`
			}
			if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Sprintf("line %q: %v", sc.Text(), err))
				l.mu.Unlock()
				return
			}
			l.add(client.WatchEvent{Key: j.Key, Value: []byte(j.Value), Version: j.Version, PrevVersion: j.PrevVersion, Deleted: j.Deleted}, written)
		}
	}()
	return l
}
