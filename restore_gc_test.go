package caspaxos

import (
	"errors"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
)

// A key restored at a version floor (kv.OpRestore, `caspaxos snapshot
// restore`), then deleted and collected by GC, comes back above the
// floor: GC's fast-forward passes the tombstone's version (PROTOCOL.md
// §7, §9), so a restore's jump holds across GC too.
func TestRestoredVersionSurvivesGC(t *testing.T) {
	s := openTest(t, fastGC)
	ctx := testCtx(t)
	const floor = 1_000_000
	st, err := s.do(ctx, kv.Op{Kind: kv.OpRestore, Key: "r", Value: []byte("restored"), Version: floor})
	if err != nil || st.Version != floor {
		t.Fatalf("restore: version %d, %v; want %d", st.Version, err, floor)
	}
	if _, err := s.CompareAndSwap(ctx, "r", 1, []byte("stale")); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("an old compare-and-swap against the restored key: %v", err)
	}
	if err := s.Delete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	waitCollected(t, s, "the restored key's tombstone is collected", func(key string) bool { return key == "r" })
	v, err := s.Create(ctx, "r", []byte("again"))
	if err != nil || v <= floor+1 {
		t.Fatalf("re-created after GC at version %d (%v), want above the tombstone's %d", v, err, floor+1)
	}
}
