package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// TestLockCommand: lock runs the command with the fencing token, exits
// with its status and releases the lock (the next hold's token is
// higher); a lost lease stops the command and exits 11.
func TestLockCommand(t *testing.T) {
	b := clientapitest.New()
	env := map[string]string{envEndpoints: serveAddr(t, b)}
	runSteps(t, env, []step{
		{args: []string{"lock", "res", "--", "sh", "-c", `echo "$CASPAXOS_FENCING_TOKEN"; exit 3`}, stdout: "1\n", code: 3},
		{args: []string{"lock", "res", "--", "sh", "-c", `echo "$CASPAXOS_FENCING_TOKEN"`}, stdout: "3\n"},
		{args: []string{"lock", "res"}, code: exitUsage, errLine: "requires at least 2 arg(s)"},
		{args: []string{"lock", "res", "sh", "--", "x"}, code: exitUsage, errLine: "want NAME -- COMMAND"},
	})
	// A hold whose lease is revoked: the command (which would sleep a
	// minute) is stopped, and lock exits 11.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := b.Watch(ctx, kv.WatchRequest{Keys: []string{kv.LockKey("res")}, From: map[string]uint64{kv.LockKey("res"): 4}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- runCLI(t, env, "", "lock", "--ttl", "300ms", "res", "--", "sleep", "60") }()
	evs, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := kv.DecodeLock(evs[0].Value)
	if err != nil || l.Holder == 0 {
		t.Fatalf("the lock as held: %+v, %v", l, err)
	}
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(l.Holder)}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != exitLocked || !strings.Contains(r.stderr, "lease was lost") {
		t.Fatalf("lock whose lease was revoked: exit %d, stderr %q", r.code, r.stderr)
	}
}
