package caspaxos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/storage"
)

func memoryStores(n int) []storage.Store {
	out := make([]storage.Store, n)
	for i := range out {
		out[i] = storage.NewMemory()
	}
	return out
}

// openTest opens a three-node store in memory with short timeouts.
func openTest(t *testing.T, mod func(*Options)) *Store {
	t.Helper()
	opts := Options{
		Stores:         memoryStores(3),
		Limits:         Limits{MaxKeyBytes: 64, MaxValueBytes: 256},
		AttemptTimeout: 30 * time.Millisecond,
		ReadTimeout:    20 * time.Millisecond,
		BackoffBase:    time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The seeds' scenario: 10 workers × 100 increments of one key end at 1000,
// and every increment saw a distinct value.
func TestConcurrentIncrementsOfOneKey(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	const workers, each = 10, 100
	seen := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				n, _, err := s.Increment(ctx, "counter", 1)
				if err != nil {
					t.Error(err)
					return
				}
				seen[w] = append(seen[w], n)
			}
		}()
	}
	wg.Wait()
	v, err := s.Get(ctx, "counter")
	if err != nil || string(v.Data) != strconv.Itoa(workers*each) {
		t.Fatalf("counter is %q (%v), want %d", v.Data, err, workers*each)
	}
	all := slices.Concat(seen...)
	slices.Sort(all)
	for i, n := range all {
		if n != int64(i+1) {
			t.Fatalf("increments returned %v...; want each of 1..%d once", all[:i+1], workers*each)
		}
	}
}

// The same with 1,000 keys changed in parallel: key i gets i%7+1 increments.
func TestConcurrentIncrementsOfManyKeys(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	const keys, workers = 1000, 50
	key := func(i int) string { return fmt.Sprintf("counter/%d", i) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 7 {
				for i := w; i < keys; i += workers {
					if round > i%7 {
						continue
					}
					if _, _, err := s.Increment(ctx, key(i), 1); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for i := range keys {
		v, err := s.Get(ctx, key(i))
		if err != nil || string(v.Data) != strconv.Itoa(i%7+1) {
			t.Fatalf("%s is %q (%v), want %d", key(i), v.Data, err, i%7+1)
		}
	}
}

// mustVersion returns a function that returns the version of a write and
// fails the test if the write failed.
func mustVersion(t *testing.T) func(v uint64, err error) uint64 {
	return func(v uint64, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// wantMismatch fails the test unless err is a version mismatch carrying current.
func wantMismatch(t *testing.T, err error, current uint64) {
	t.Helper()
	var vm *VersionMismatchError
	if !errors.Is(err, ErrVersionMismatch) || !errors.As(err, &vm) || vm.Current != current {
		t.Fatalf("got %v, want a version mismatch with current version %d", err, current)
	}
}

func TestCompareAndSwapVersions(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	must := mustVersion(t)

	v1 := must(s.Create(ctx, "k", []byte("a")))
	_, err := s.Create(ctx, "k", []byte("again"))
	wantMismatch(t, err, v1)
	v2 := must(s.CompareAndSwap(ctx, "k", v1, []byte("b")))
	if v2 <= v1 {
		t.Fatalf("version went from %d to %d", v1, v2)
	}
	_, err = s.CompareAndSwap(ctx, "k", v1, []byte("stale"))
	wantMismatch(t, err, v2)
	wantMismatch(t, s.CompareAndDelete(ctx, "k", v1), v2)

	// ABA: delete and re-create the same value; the old versions stay stale.
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	_, err = s.CompareAndSwap(ctx, "k", v2, []byte("b"))
	wantMismatch(t, err, 0)
	v3 := must(s.CompareAndSwap(ctx, "k", 0, []byte("b")))
	if v3 <= v2 {
		t.Fatalf("re-created with version %d after %d: versions must keep rising across deletes", v3, v2)
	}
	_, err = s.CompareAndSwap(ctx, "k", v2, []byte("c"))
	wantMismatch(t, err, v3)

	v4 := must(s.Put(ctx, "k", []byte("d")))
	if err := s.CompareAndDelete(ctx, "k", v4); err != nil {
		t.Fatal(err)
	}
	v5 := must(s.Put(ctx, "k", []byte("e")))
	got, err := s.Get(ctx, "k")
	if err != nil || string(got.Data) != "e" || got.Version != v5 || v5 <= v4 || v4 <= v3 {
		t.Fatalf("get %q@%d (%v); versions %d %d %d", got.Data, got.Version, err, v3, v4, v5)
	}
}

func TestErrorClasses(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	must := mustVersion(t)
	must(s.Put(ctx, "text", []byte("abc")))
	must(s.Put(ctx, "max", []byte(strconv.FormatInt(math.MaxInt64, 10))))
	must(s.Put(ctx, "min", []byte(strconv.FormatInt(math.MinInt64, 10))))
	long := strings.Repeat("k", 65)
	big := make([]byte, 257)
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"get absent", func() error { _, err := s.Get(ctx, "absent"); return err }, ErrNotFound},
		{"delete absent", func() error { return s.Delete(ctx, "absent") }, ErrNotFound},
		{"compare-and-delete absent", func() error { return s.CompareAndDelete(ctx, "absent", 3) }, ErrVersionMismatch},
		{"create existing", func() error { _, err := s.Create(ctx, "text", nil); return err }, ErrVersionMismatch},
		{"increment text", func() error { _, _, err := s.Increment(ctx, "text", 1); return err }, ErrNotAnInteger},
		{"overflow", func() error { _, _, err := s.Increment(ctx, "max", 1); return err }, ErrOverflow},
		{"underflow", func() error { _, _, err := s.Increment(ctx, "min", -1); return err }, ErrOverflow},
		{"empty key", func() error { _, err := s.Put(ctx, "", nil); return err }, ErrEmptyKey},
		{"empty key get", func() error { _, err := s.Get(ctx, ""); return err }, ErrEmptyKey},
		{"key too large", func() error { _, err := s.Put(ctx, long, nil); return err }, ErrKeyTooLarge},
		{"key too large change", func() error { _, err := s.Change(ctx, long, keep); return err }, ErrKeyTooLarge},
		{"value too large", func() error { _, err := s.Put(ctx, "k", big); return err }, ErrValueTooLarge},
		{"value too large cas", func() error { _, err := s.CompareAndSwap(ctx, "k", 0, big); return err }, ErrValueTooLarge},
		{"value too large change", func() error { _, err := s.Change(ctx, "k", setTo(big)); return err }, ErrValueTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	for key, want := range map[string]string{"text": "abc", "max": "9223372036854775807", "min": "-9223372036854775808"} {
		if v, err := s.Get(ctx, key); err != nil || string(v.Data) != want {
			t.Fatalf("%s changed to %q (%v) by a refused operation", key, v.Data, err)
		}
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused oversized write left k: %v", err)
	}
}

func keep(protocol.State) (protocol.Write, error) { return protocol.Write{}, nil }

func setTo(v []byte) protocol.Change {
	return func(protocol.State) (protocol.Write, error) {
		return protocol.Write{Kind: protocol.WriteSet, Value: v}, nil
	}
}

func TestChangeRunsAnyFunction(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	appendX := func(cur protocol.State) (protocol.Write, error) {
		return protocol.Write{Kind: protocol.WriteSet, Value: append(slices.Clone(cur.Value), 'x')}, nil
	}
	for range 3 {
		if _, err := s.Change(ctx, "k", appendX); err != nil {
			t.Fatal(err)
		}
	}
	refusal := errors.New("not today")
	st, err := s.Change(ctx, "k", func(protocol.State) (protocol.Write, error) { return protocol.Write{}, refusal })
	if !errors.Is(err, refusal) || string(st.Value) != "xxx" {
		t.Fatalf("refusal: %v, state %v", err, st)
	}
}

func TestValuesAreCopied(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	must := mustVersion(t)
	in := []byte("abc")
	must(s.Put(ctx, "k", in))
	in[0] = 'X'
	v, err := s.Get(ctx, "k")
	if err != nil || string(v.Data) != "abc" {
		t.Fatalf("get %q, %v", v.Data, err)
	}
	v.Data[0] = 'Y'
	if v, _ := s.Get(ctx, "k"); string(v.Data) != "abc" {
		t.Fatalf("changing a returned value changed the store: %q", v.Data)
	}
}

// isolate cuts every link that touches one of ids.
func isolate(ids ...protocol.NodeID) node.Hook {
	return node.Hook{Down: func(from, to protocol.NodeID) bool {
		return from != to && (slices.Contains(ids, from) || slices.Contains(ids, to))
	}}
}

func TestNoQuorum(t *testing.T) {
	s := openTest(t, nil)
	s.net.SetHook(isolate(2, 3))
	const deadline = 200 * time.Millisecond
	for i := range 6 { // through each entry node, twice
		key := fmt.Sprintf("k%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		_, err := s.Put(ctx, key, []byte("v"))
		cancel()
		if !errors.Is(err, ErrNoQuorum) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("put %s without quorum: %v, want ErrNoQuorum wrapping the deadline", key, err)
		}
		if took := time.Since(start); took > deadline+time.Second {
			t.Fatalf("put %s took %v with a %v deadline", key, took, deadline)
		}
	}
	s.net.SetHook(node.Hook{})
	ctx := testCtx(t)
	for i := range 6 {
		if _, err := s.Get(ctx, fmt.Sprintf("k%d", i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after ErrNoQuorum, get k%d: %v; nothing may have been applied", i, err)
		}
	}
}

func TestUnknownOutcome(t *testing.T) {
	s := openTest(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Accepts reach the acceptors, their confirmations are lost, and the
	// caller gives up once an accept was sent.
	s.net.SetHook(node.Hook{Filter: func(_, _ protocol.NodeID, msgs []protocol.Message) []protocol.Message {
		if slices.ContainsFunc(msgs, func(m protocol.Message) bool { return m.Kind == protocol.MsgAccept }) {
			cancel()
		}
		return slices.DeleteFunc(msgs, func(m protocol.Message) bool { return m.Kind == protocol.MsgAccepted })
	}})
	_, err := s.Put(ctx, "k", []byte("maybe"))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("put with accepts unconfirmed: %v, want ErrUnknownOutcome wrapping the cancellation", err)
	}
	s.net.SetHook(node.Hook{})
	// Here the acceptors did accept it: the change took effect.
	if v, err := s.Get(testCtx(t), "k"); err != nil || string(v.Data) != "maybe" {
		t.Fatalf("get after the unknown outcome: %q, %v", v.Data, err)
	}
}

// brokenDisk is a store whose every write fails as a failed fsync would.
type brokenDisk struct{ *storage.Memory }

func (brokenDisk) Apply([]storage.Entry) error { return storage.ErrSyncFailed }
func (brokenDisk) SetCeiling(uint64) error     { return storage.ErrSyncFailed }

func TestOneNodeDown(t *testing.T) {
	tests := []struct {
		name string
		mod  func(o *Options)
		down func(s *Store)
	}{
		{"stopped", nil, func(s *Store) { s.nodes[2].Stop() }},
		{"its disk failed", func(o *Options) { o.Stores[2] = brokenDisk{storage.NewMemory()} }, func(*Store) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, tt.mod)
			tt.down(s)
			ctx := testCtx(t)
			must := mustVersion(t)
			for i := range 30 { // keys homed on every node, through every entry node
				key := fmt.Sprintf("k%d", i)
				v1 := must(s.Put(ctx, key, []byte("a")))
				v2 := must(s.CompareAndSwap(ctx, key, v1, []byte("b")))
				if n, _, err := s.Increment(ctx, key+"/n", 5); err != nil || n != 5 {
					t.Fatalf("increment %s: %d, %v", key, n, err)
				}
				if v, err := s.Get(ctx, key); err != nil || string(v.Data) != "b" || v.Version != v2 {
					t.Fatalf("get %s: %q@%d, %v", key, v.Data, v.Version, err)
				}
			}
		})
	}
}

func TestReopenDirKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	must := mustVersion(t)
	open := func() *Store {
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	versions := map[string]uint64{}
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		versions[key] = must(s.Put(ctx, key, []byte(key)))
	}
	if err := s.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	if _, err := s.Get(ctx, "k0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key after reopening: %v", err)
	}
	for i := 1; i < 20; i++ {
		key := fmt.Sprintf("k%d", i)
		v, err := s.Get(ctx, key)
		if err != nil || string(v.Data) != key || v.Version != versions[key] {
			t.Fatalf("after reopening, %s is %q@%d (%v), want %q@%d", key, v.Data, v.Version, err, key, versions[key])
		}
		if nv := must(s.Put(ctx, key, nil)); nv <= v.Version {
			t.Fatalf("after reopening, %s went from version %d to %d", key, v.Version, nv)
		}
	}
}

func TestClose(t *testing.T) {
	s := openTest(t, nil)
	ctx := testCtx(t)
	must := mustVersion(t)
	must(s.Put(ctx, "k", nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after Close: %v", err)
	}
}

func TestOpenValidates(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no storage", Options{}},
		{"both", Options{Dir: "x", Stores: memoryStores(3)}},
		{"stores and nodes disagree", Options{Stores: memoryStores(2), Nodes: 3}},
		{"quorums do not intersect", Options{Stores: memoryStores(3), PrepareQuorum: 1, AcceptQuorum: 2}},
		{"negative timeout", Options{Stores: memoryStores(3), DefaultTimeout: -time.Second}},
	}
	for _, tt := range tests {
		if s, err := Open(tt.opts); err == nil {
			s.Close()
			t.Errorf("%s: opened", tt.name)
		}
	}
}

func TestFlexibleQuorums(t *testing.T) {
	s := openTest(t, func(o *Options) {
		o.Stores = memoryStores(5)
		o.PrepareQuorum, o.AcceptQuorum = 4, 2
	})
	ctx := testCtx(t)
	for range 10 {
		if _, _, err := s.Increment(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v.Data) != "10" {
		t.Fatalf("get %q, %v", v.Data, err)
	}
}
