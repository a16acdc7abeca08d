package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// TestGCDeleteHeavyWithRestart runs a delete-heavy workload (puts, deletes
// and gets of a few shared keys) against three `caspaxos serve` processes
// whose deletion GC runs with short delays, and SIGKILLs one node mid-way,
// restarting it later. It checks that GC rounds fail while the node is down,
// that the history (with final reads before and after GC finished) is
// linearizable, so that no deleted value ever comes back, and that once GC
// has finished no node holds a tombstone: first by the nodes' metrics, then
// by opening every stopped node's store.
func TestGCDeleteHeavyWithRestart(t *testing.T) {
	c := newGCCluster(t, 3)
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	w := &gcWorkload{keys: 24}
	stop := w.start(c, 6)
	defer stop()

	w.waitAcked(t, 1500)
	c.kill(1)
	down := w.acked.Load()
	// While n2 is down no GC round can finish: the others' rounds fail.
	c.waitMetric(t, 0, "caspaxos_gc_rounds_failed_total", func(v float64) bool { return v > 0 })
	w.waitAcked(t, down+1500)
	c.startGC(1)
	c.waitHealth(1, 200)
	w.waitAcked(t, w.acked.Load()+1500)
	stop()
	ops, acked, unknown := w.counts()
	t.Logf("workload: %d operations, %d acknowledged, %d of unknown outcome", ops, acked, unknown)

	cl := c.client(0, 1, 2)
	w.finalReads(t, cl, "before GC finished")
	for i := range c.procs {
		c.waitCollected(t, i)
	}
	w.finalReads(t, cl, "after GC finished")
	var collected float64
	for i := range c.procs {
		m := c.metrics(t, i)
		collected += m["caspaxos_gc_collected_total"]
		t.Logf("%s: gc rounds %v (failed %v), collected %v, swept %v, adopted %v", c.procs[i].name,
			m["caspaxos_gc_rounds_total"], m["caspaxos_gc_rounds_failed_total"], m["caspaxos_gc_collected_total"],
			m["caspaxos_gc_swept_total"], m["caspaxos_gc_adopted_total"])
	}
	if collected == 0 {
		t.Fatal("no node's GC collected anything")
	}
	res, info := porcupine.CheckOperationsVerbose(gcModel(), w.history(), 30*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		_ = porcupine.VisualizePath(gcModel(), info, path)
		t.Fatalf("history of %d operations: %v (visualization: %s)", len(w.history()), res, path)
	}

	// The stores themselves: stop every node and count what is left.
	for i := range c.procs {
		c.terminate(t, i)
	}
	for _, p := range c.procs {
		live, tombs := countRegisters(t, p.dir)
		if tombs != 0 || live > w.keys {
			t.Errorf("%s's store after GC: %d live registers, %d tombstones; want no tombstone and at most %d live",
				p.name, live, tombs, w.keys)
		}
	}
}

// newGCCluster starts n nodes with deletion GC tuned to act within
// milliseconds and to sweep twice a second.
func newGCCluster(t *testing.T, n int) *gcCluster {
	t.Helper()
	c := &gcCluster{cluster: newProcs(t, n)}
	for i := range c.procs {
		c.startGC(i)
	}
	return c
}

type gcCluster struct{ *cluster }

func (c *gcCluster) startGC(i int) {
	p := c.procs[i]
	p.cmd = exec.Command(binaryPath, "serve", "--name", p.name, "--data-dir", p.dir,
		"--client-addr", p.client, "--peer-addr", p.peer, "--cluster", c.members, "--request-timeout", "2s",
		"--gc-delay", "20ms", "--gc-retry-base", "10ms", "--gc-retry-max", "100ms", "--gc-round-timeout", "2s",
		"--gc-sweep-interval", "300ms", "--gc-orphan-delay", "200ms",
		// The Go client's deletes carry request IDs: their tombstones are
		// kept for the window.
		"--idempotency-window", "1s", "--max-clock-skew", "0s")
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.exited)
}

// terminate stops node i with SIGTERM (a clean stop) and waits for it.
func (c *cluster) terminate(t *testing.T, i int) {
	t.Helper()
	p := c.procs[i]
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s of SIGTERM", p.name)
	}
	p.cmd = nil
}

// metrics scrapes node i's /metrics into name -> value (unlabelled series).
func (c *gcCluster) metrics(t *testing.T, i int) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + c.procs[i].client + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// waitMetric polls node i's metric until ok holds.
func (c *gcCluster) waitMetric(t *testing.T, i int, name string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, found := c.metrics(t, i)[name]; found && ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never reached the expected value", c.procs[i].name, name)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

// waitCollected waits until node i's GC queue is empty and a sweep that
// began after this call found no tombstone in its store.
func (c *gcCluster) waitCollected(t *testing.T, i int) {
	t.Helper()
	var sweeps float64 = -1
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := c.metrics(t, i)
		if sweeps < 0 && m != nil {
			sweeps = m["caspaxos_gc_sweeps_total"]
		}
		// sweeps+2: the sweep in progress now may have begun before.
		if sweeps >= 0 && m["caspaxos_gc_sweeps_total"] >= sweeps+2 &&
			m["caspaxos_gc_tombstones"] == 0 && m["caspaxos_gc_queued_keys"] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GC never finished: tombstones %v, queued %v, sweeps %v (from %v)", c.procs[i].name,
				m["caspaxos_gc_tombstones"], m["caspaxos_gc_queued_keys"], m["caspaxos_gc_sweeps_total"], sweeps)
		}
		waitUntil(time.Now().Add(50 * time.Millisecond))
	}
}

// countRegisters opens a stopped node's store and counts its registers
// holding a value and its tombstones.
func countRegisters(t *testing.T, dir string) (live, tombs int) {
	t.Helper()
	st, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatalf("opening %s: %v", dir, err)
	}
	defer st.Close()
	err = st.Scan("", func(_ string, reg protocol.Register) bool {
		switch {
		case reg.State.Exists():
			live++
		case reg.State.Deleted:
			tombs++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return live, tombs
}

// gcWorkload: workers put unique values to, delete and read keys they
// share, recording a history for Porcupine.
type gcWorkload struct {
	keys   int
	acked  atomic.Int64 // operations answered with an outcome
	mu     sync.Mutex
	ops    []porcupine.Operation
	nextID atomic.Int64
}

// start runs n workers, each through every node (its own first), until
// the returned function is called; it waits for them to end.
func (w *gcWorkload) start(c *gcCluster, n int) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		order := []int{i % 3, (i + 1) % 3, (i + 2) % 3}
		cl := c.client(order...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for seq := 0; ; seq++ {
				select {
				case <-done:
					return
				default:
				}
				in := gcIn{Key: fmt.Sprintf("gc/%02d", rng.IntN(w.keys))}
				switch r := rng.IntN(100); {
				case r < 40:
					in.Kind = gcDelete
				case r < 75:
					in.Kind, in.Value = gcPut, fmt.Sprintf("w%d-%d", i, seq)
				default:
					in.Kind = gcGet
				}
				w.do(cl, in)
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// do runs one operation and records it.
func (w *gcWorkload) do(cl *client.Client, in gcIn) gcOut {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := time.Now().UnixNano()
	var out gcOut
	var err error
	switch in.Kind {
	case gcPut:
		_, err = cl.Put(ctx, in.Key, []byte(in.Value))
	case gcDelete:
		_, err = cl.Delete(ctx, in.Key, 0)
	case gcGet:
		var v client.Value
		v, err = cl.Get(ctx, in.Key)
		out.Value = string(v.Data)
	}
	ret := time.Now().UnixNano()
	switch {
	case err == nil:
		out.Status = gcOK
	case errors.Is(err, client.ErrNotFound):
		out.Status = gcNotFound
	case errors.Is(err, client.ErrNoQuorum), errors.Is(err, client.ErrUnavailable):
		return gcOut{Status: gcNotApplied} // nothing was sent
	case in.Kind == gcGet:
		return gcOut{Status: gcUnknown} // a read with no answer has no effect
	default:
		out.Status, ret = gcUnknown, math.MaxInt64
	}
	if out.Status != gcUnknown {
		w.acked.Add(1)
	}
	w.mu.Lock()
	w.ops = append(w.ops, porcupine.Operation{ClientId: int(w.nextID.Add(1)), Input: in, Call: call, Output: out, Return: ret})
	w.mu.Unlock()
	return out
}

// waitAcked waits until n operations were answered.
func (w *gcWorkload) waitAcked(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.acked.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d operations answered", w.acked.Load(), n)
		}
		waitUntil(time.Now().Add(10 * time.Millisecond))
	}
}

// finalReads reads every key (recorded in the history), retrying reads
// that got no answer.
func (w *gcWorkload) finalReads(t *testing.T, cl *client.Client, when string) {
	t.Helper()
	for k := 0; k < w.keys; k++ {
		key := fmt.Sprintf("gc/%02d", k)
		deadline := time.Now().Add(10 * time.Second)
		for {
			out := w.do(cl, gcIn{Kind: gcGet, Key: key})
			if out.Status == gcOK || out.Status == gcNotFound {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("final read of %s %s: no answer", key, when)
			}
		}
	}
}

func (w *gcWorkload) counts() (ops, acked, unknown int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, op := range w.ops {
		if op.Output.(gcOut).Status == gcUnknown {
			unknown++
		} else {
			acked++
		}
	}
	return len(w.ops), acked, unknown
}

func (w *gcWorkload) history() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ops)
}

// The per-key model of a register that is put, deleted and read.

type gcKind uint8

const (
	gcPut gcKind = iota + 1
	gcDelete
	gcGet
)

type gcIn struct {
	Kind  gcKind
	Key   string
	Value string // gcPut
}

type gcStatus uint8

const (
	gcOK gcStatus = iota + 1
	gcNotFound
	gcNotApplied
	gcUnknown
)

type gcOut struct {
	Status gcStatus
	Value  string // gcGet
}

// gcState is a key's value; "" is absent (every put writes a non-empty value).
type gcState string

func gcStep(s gcState, in gcIn, out gcOut) []gcState {
	if out.Status == gcUnknown {
		switch in.Kind {
		case gcPut:
			return []gcState{s, gcState(in.Value)}
		case gcDelete:
			return []gcState{s, ""}
		}
		return []gcState{s}
	}
	switch {
	case in.Kind == gcPut && out.Status == gcOK:
		return []gcState{gcState(in.Value)}
	case in.Kind == gcDelete && out.Status == gcOK:
		return []gcState{""}
	case in.Kind == gcDelete && out.Status == gcNotFound && s == "":
		return []gcState{""}
	case in.Kind == gcGet && out.Status == gcOK && s != "" && string(s) == out.Value:
		return []gcState{s}
	case in.Kind == gcGet && out.Status == gcNotFound && s == "":
		return []gcState{s}
	}
	return nil
}

func gcModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Input.(gcIn).Key
				byKey[k] = append(byKey[k], op)
			}
			keys := make([]string, 0, len(byKey))
			for k := range byKey {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			out := make([][]porcupine.Operation, len(keys))
			for i, k := range keys {
				out[i] = byKey[k]
			}
			return out
		},
		Init: func() []interface{} { return []interface{}{gcState("")} },
		Step: func(state, in, out interface{}) []interface{} {
			var next []interface{}
			for _, s := range gcStep(state.(gcState), in.(gcIn), out.(gcOut)) {
				next = append(next, s)
			}
			return next
		},
		DescribeOperation: func(in, out interface{}) string { return fmt.Sprintf("%+v -> %+v", in, out) },
		DescribeState:     func(s interface{}) string { return fmt.Sprintf("%q", string(s.(gcState))) },
	}
	return nm.ToModel()
}
