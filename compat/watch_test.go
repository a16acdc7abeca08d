package compat

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// nextEvent waits for the next response on ch with events, or fails.
func nextEvent(t *testing.T, ch clientv3.WatchChan, what string) *clientv3.Event {
	t.Helper()
	select {
	case wr, ok := <-ch:
		if !ok || wr.Err() != nil || len(wr.Events) == 0 {
			t.Fatalf("%s: %+v (open %v, err %v)", what, wr, ok, wr.Err())
		}
		return wr.Events[0]
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no event within 10 s", what)
	}
	return nil
}

// watchChecks runs clientv3's Watch: a key and a prefix on one client (one
// stream), a put and a delete of each arriving with the revisions Range
// and Put give, written through another node; cancel; a key resumed at a
// revision it has reached; a prefix resumed at a revision answered with
// ErrCompacted; prev_kv on a key and a prefix (prevKVChecks).
func watchChecks(t *testing.T, ctx context.Context, a, b *clientv3.Client) {
	kctx, stopKey := context.WithCancel(ctx)
	defer stopKey()
	kch := a.Watch(kctx, "w/k")
	pch := a.Watch(ctx, "w/p/", clientv3.WithPrefix())

	put, err := b.Put(ctx, "w/k", "1")
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, kch, "key watch, put")
	if ev.Type != mvccpb.PUT || string(ev.Kv.Value) != "1" || ev.Kv.ModRevision != put.Header.Revision || ev.Kv.CreateRevision != put.Header.Revision || ev.Kv.Version != 1 {
		t.Fatalf("key put event: %+v (put at %d)", ev, put.Header.Revision)
	}
	del, err := b.Delete(ctx, "w/k")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, kch, "key watch, delete"); ev.Type != mvccpb.DELETE || ev.Kv.ModRevision != del.Header.Revision {
		t.Fatalf("key delete event: %+v (deleted at %d)", ev, del.Header.Revision)
	}
	pput, err := b.Put(ctx, "w/p/x", "x")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, pch, "prefix watch, put"); ev.Type != mvccpb.PUT || string(ev.Kv.Key) != "w/p/x" || ev.Kv.ModRevision != pput.Header.Revision {
		t.Fatalf("prefix put event: %+v", ev)
	}
	if _, err := b.Delete(ctx, "w/p/x"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, pch, "prefix watch, delete"); ev.Type != mvccpb.DELETE || string(ev.Kv.Key) != "w/p/x" {
		t.Fatalf("prefix delete event: %+v", ev)
	}

	// Cancelled, the key's channel closes.
	stopKey()
	for range kch {
	}

	// A key resumed at a revision it has reached gets its current state.
	again, err := b.Put(ctx, "w/k", "2")
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a.Watch(ctx, "w/k", clientv3.WithRev(again.Header.Revision)), "key at a revision"); string(ev.Kv.Value) != "2" || ev.Kv.ModRevision != again.Header.Revision {
		t.Fatalf("key resumed at %d: %+v", again.Header.Revision, ev)
	}
	// A prefix resumed at a revision: compacted, so the client relists.
	select {
	case wr := <-a.Watch(ctx, "w/p/", clientv3.WithPrefix(), clientv3.WithRev(pput.Header.Revision+1)):
		if wr.CompactRevision == 0 || wr.Err() == nil || !strings.Contains(wr.Err().Error(), "compacted") {
			t.Fatalf("prefix resumed at a revision: %+v, err %v; want ErrCompacted", wr, wr.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("prefix resumed at a revision: no answer within 10 s")
	}
	prevKVChecks(t, ctx, a, b)
}

// prevKVChecks: Watch WithPrevKV on a key from now (its state before the
// watch is the first put's PrevKv) and on a prefix (a key listed at the
// start has its listed state as PrevKv, a key created after it none); a
// put's PrevKv is the state put before it, a delete's the last value.
func prevKVChecks(t *testing.T, ctx context.Context, a, b *clientv3.Client) {
	put := func(k, v string) int64 {
		t.Helper()
		r, err := b.Put(ctx, k, v)
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	del := func(k string) {
		t.Helper()
		if _, err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// want checks an event: its type, value, and PrevKv ("" with rev 0:
	// none).
	want := func(ch clientv3.WatchChan, what string, typ mvccpb.Event_EventType, key, prev string, prevRev int64) {
		t.Helper()
		ev := nextEvent(t, ch, what)
		switch {
		case ev.Type != typ || string(ev.Kv.Key) != key:
			t.Fatalf("%s: event %+v", what, ev)
		case prevRev == 0 && ev.PrevKv != nil:
			t.Fatalf("%s: PrevKv %+v, want none", what, ev.PrevKv)
		case prevRev != 0 && (ev.PrevKv == nil || string(ev.PrevKv.Key) != key || string(ev.PrevKv.Value) != prev || ev.PrevKv.ModRevision != prevRev):
			t.Fatalf("%s: PrevKv %+v, want %q at %d", what, ev.PrevKv, prev, prevRev)
		}
	}
	r1 := put("w/pv", "one")
	kch := a.Watch(ctx, "w/pv", clientv3.WithPrevKV())
	r2 := put("w/pv", "two")
	want(kch, "key, put", mvccpb.PUT, "w/pv", "one", r1)
	del("w/pv")
	want(kch, "key, delete", mvccpb.DELETE, "w/pv", "two", r2)

	listed := put("w/q/old", "listed")
	pch := a.Watch(ctx, "w/q/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	put("w/q/old", "changed")
	want(pch, "prefix, a listed key put", mvccpb.PUT, "w/q/old", "listed", listed)
	created := put("w/q/new", "1")
	want(pch, "prefix, a key created", mvccpb.PUT, "w/q/new", "", 0)
	second := put("w/q/new", "2")
	want(pch, "prefix, put", mvccpb.PUT, "w/q/new", "1", created)
	del("w/q/new")
	want(pch, "prefix, delete", mvccpb.DELETE, "w/q/new", "2", second)
}

// until runs `etcdctl args`, a command that runs until it is stopped
// (watch, lease keep-alive), until its output holds want (then it is
// killed), calling poke every 200 ms meanwhile (a write a watch from now
// should see), or fails after 10 s.
func (e etcdctl) until(want string, poke func(), args ...string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--endpoints", e.endpoints}, args...)...)
	cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var got []string
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				e.t.Fatalf("etcdctl %s ended without %q:\n%s", strings.Join(args, " "), want, strings.Join(got, "\n"))
			}
			got = append(got, l)
			if strings.Contains(strings.Join(got, "\n"), want) {
				return
			}
		case <-tick.C:
			if poke != nil {
				poke()
			}
		case <-ctx.Done():
			e.t.Fatalf("etcdctl %s: no %q within 10 s:\n%s", strings.Join(args, " "), want, strings.Join(got, "\n"))
		}
	}
}

// etcdctlWatchChecks: `etcdctl watch` of a key at a revision, of a prefix
// from now, of a key with --prev-kv (each put's previous value printed
// before its own), and of a prefix at a revision (refused: relist).
func etcdctlWatchChecks(t *testing.T, e etcdctl) {
	out, err := e.run("", "put", "wc/k", "one", "-w", "json")
	if err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	var rev int64
	if i := strings.Index(out, `"revision":`); i < 0 {
		t.Fatalf("put -w json: no revision in %s", out)
	} else if _, err := fmt.Sscan(strings.TrimLeft(out[i+len(`"revision":`):], " "), &rev); err != nil {
		t.Fatalf("put -w json: %v in %s", err, out)
	}
	e.until("PUT\nwc/k\none", nil, "watch", "--rev", fmt.Sprint(rev), "wc/k")
	e.until("PUT\nwc/p/a\nv", func() {
		e.must("", []string{"put", "wc/p/a", "v"}, "OK")
	}, "watch", "--prefix", "wc/p/")
	// Puts alternate x and y, so that once the watch is up an event prints
	// the other value as its previous one.
	e.must("", []string{"put", "wc/pv", "y"}, "OK")
	next := "x"
	e.until("PUT\nwc/pv\nx\nwc/pv\ny", func() {
		e.must("", []string{"put", "wc/pv", next}, "OK")
		next = map[string]string{"x": "y", "y": "x"}[next]
	}, "watch", "--prev-kv", "wc/pv")
	e.refused("", []string{"watch", "--prefix", "--rev", "1", "wc/p/"}, "compacted")
}
