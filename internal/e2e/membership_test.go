package e2e

import (
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
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/server/daemon"
)

// TestMembershipChangeUnderLoad changes the members of a cluster of real
// processes while clients run put, get, compare-and-swap and increment on a
// few keys, each client through one node that stays a member while it is
// used: 3 -> 4 -> 5 (add n4, n5); n2 loses its disk (killed, removed,
// started again with --join on an empty data directory, added back);
// 5 -> 4 -> 3 (remove n1, an original member, and n4). Every change goes
// to n3, through `caspaxos members add|remove` but the last, through the
// Go client. At the end n3 is killed
// too, so the reads go through n2 (its new disk) and n5 only, both filled
// by catch-ups: every acknowledged write must be there, and the whole
// history must be linearizable, writes of unknown outcome counting as
// possibly applied. It runs under each setup.
func TestMembershipChangeUnderLoad(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testMembershipChangeUnderLoad(t, s) })
	}
}

func testMembershipChangeUnderLoad(t *testing.T, s setup) {
	start := time.Now()
	c := newClusterWith(t, 3, s, "m/")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	w := &workload{keys: []string{"m/a", "m/b", "m/c", "m/d", "m/e", "m/f"}, seed: uint64(time.Now().UnixNano())}
	t.Logf("workload seed %d", w.seed)
	t.Cleanup(w.stopAll)
	const n1, n2, n3 = 0, 1, 2
	stopN1, stopN2 := w.run(c, n1, 1), w.run(c, n2, 1)
	w.run(c, n3, 2)
	w.waitSuccesses(t, 20)

	n4 := c.startJoiner("n4")
	c.change(n3, "add", "n4="+c.procs[n4].peer)
	stopN4 := w.run(c, n4, 1)
	n5 := c.startJoiner("n5")
	c.change(n3, "add", "n5="+c.procs[n5].peer)
	w.run(c, n5, 1)
	w.waitSuccesses(t, 20)

	// n2 loses its disk.
	stopN2()
	c.kill(n2)
	c.change(n3, "remove", "n2")
	c.procs[n2].dir = c.t.TempDir()
	c.startJoin(n2)
	c.change(n3, "add", "n2="+c.procs[n2].peer)
	w.run(c, n2, 1)
	w.waitSuccesses(t, 20)

	stopN1()
	c.change(n3, "remove", "n1")
	c.waitRemovedExit(n1)
	// The last change through the Go client (gRPC) rather than the CLI.
	stopN4()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	m, err := c.admin(n3).MemberRemove(ctx, "n4")
	cancel()
	if err != nil || m.Change != nil || len(m.Members) != 3 {
		t.Fatalf("client MemberRemove n4: %+v %v", m, err)
	}
	c.waitRemovedExit(n4)
	w.waitSuccesses(t, 20)
	w.stopAll()
	changed := time.Since(start)

	c.checkMembers(n3, "n2", "n3", "n5")
	c.kill(n3)
	w.finalReads(t, c.client(n2, n5))
	ops, acked, unknown := w.counts()
	t.Logf("%d operations (%d acknowledged, %d of unknown outcome) in %v; final reads done at %v",
		ops, acked, unknown, changed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	checkStart := time.Now()
	switch res := checkRegisters(w.history(), 30*time.Second); res {
	case porcupine.Ok:
		t.Logf("linearizable (checked in %v)", time.Since(checkStart).Round(time.Millisecond))
	case porcupine.Illegal:
		t.Fatal("the history is not linearizable")
	default:
		t.Fatalf("no linearizability verdict within 30s (%v)", res)
	}
}

// waitRemovedExit waits for node i, just removed from the cluster, to stop
// by itself with exit status 0.
func (c *cluster) waitRemovedExit(i int) {
	c.t.Helper()
	p := c.procs[i]
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second): // removedGrace (10s) if the change's last call missed it, and a margin
		c.t.Fatalf("%s still runs 20s after its removal", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Fatalf("%s exited with status %d after its removal, want 0", p.name, code)
	}
	p.cmd = nil
}

// startJoiner starts a new node with --join on a fresh data directory and
// addresses, and returns its index.
func (c *cluster) startJoiner(name string) int {
	c.t.Helper()
	addrs := freeAddrs(c.t, 2)
	c.procs = append(c.procs, &proc{name: name, client: addrs[0], peer: addrs[1], dir: c.t.TempDir()})
	i := len(c.procs) - 1
	c.startJoin(i)
	return i
}

// startJoin starts node i with --join instead of --cluster, and waits until
// it serves its client API (it answers health 503 until it is added).
func (c *cluster) startJoin(i int) {
	c.t.Helper()
	p := c.procs[i]
	p.cmd = exec.Command(binaryPath, "serve", "--join", "--name", p.name, "--data-dir", p.dir,
		"--client-addr", p.client, "--peer-addr", p.peer, "--request-timeout", "2s")
	if c.sec != nil {
		p.cmd.Args = append(p.cmd.Args, c.sec.serveFlags(c.t, p.name)...)
	}
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.exited)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.get(i, "/v1/members")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s (joining) never served its client API", p.name)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

// change runs `caspaxos members OP ARG` against node via's client address
// and waits for it: the change is done when it returns.
func (c *cluster) change(via int, op, arg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	args := append(append([]string{"--endpoints", c.procs[via].client}, c.cliFlags(true)...), "members", op, arg)
	out, err := exec.CommandContext(ctx, binaryPath, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("caspaxos members %s %s: %v: %s", op, arg, err, out)
	}
	c.t.Logf("members %s %s: %v", op, arg, time.Since(began).Round(time.Millisecond))
}

// checkMembers checks node via's list of members, and that the replaced n2
// runs under a new node ID (a new disk must never reuse a ballot).
func (c *cluster) checkMembers(via int, want ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := c.client(via).Members(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
		if m.Name == "n2" && m.ID == uint64(daemon.NodeID("n2")) {
			c.t.Errorf("the replaced n2 kept the node ID of its name")
		}
	}
	if !slices.Equal(names, want) {
		c.t.Fatalf("members %v, want %v", names, want)
	}
}

// workload runs clients, each through one node, on a few keys, and records
// their history.
type workload struct {
	keys []string
	seed uint64

	mu      sync.Mutex
	ops     []porcupine.Operation
	acked   map[string]uint64 // the highest acknowledged version of each key
	unknown int
	stops   []func()
	next    int // the next client's ID
}

// run starts n clients of node i and returns a function that stops them
// and waits for their last operations.
func (w *workload) run(c *cluster, i, n int) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		cl := c.client(i)
		w.mu.Lock()
		id := w.next
		w.next++
		w.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(cl, id, stop)
		}()
	}
	var once sync.Once
	f := func() { once.Do(func() { close(stop); wg.Wait() }) }
	w.mu.Lock()
	w.stops = append(w.stops, f)
	w.mu.Unlock()
	return f
}

func (w *workload) stopAll() {
	w.mu.Lock()
	stops := slices.Clone(w.stops)
	w.mu.Unlock()
	for _, f := range stops {
		f()
	}
}

// loop issues random operations until stop, pausing briefly after a
// failure so that a node that refuses at once is not hammered.
func (w *workload) loop(cl *client.Client, id int, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(id)))
	seen := map[string]uint64{} // the last version this client saw of each key
	for seq := 1; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		key := w.keys[rng.IntN(len(w.keys))]
		in := regIn{Key: key}
		switch p := rng.IntN(100); {
		case p < 30:
			in.Kind = regGet
		case p < 50:
			in.Kind, in.Value = regPut, int64(id)*1_000_000_000+int64(seq)*1000
		case p < 75:
			in.Kind, in.Expect, in.Value = regCAS, seen[key], int64(id)*1_000_000_000+int64(seq)*1000
		default:
			in.Kind = regIncr
		}
		out := w.do(cl, id, in)
		if out.Status == regOK || out.Status == regMismatch {
			seen[key] = out.Version
		}
		if out.Status == regUnknown || out.Status == 0 {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// do runs one operation and records it. Status 0: it failed and certainly
// did not take effect (a failed read, no quorum, no endpoint): it stays out
// of the history.
func (w *workload) do(cl *client.Client, id int, in regIn) regOut {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	call := time.Now()
	out, err := issue(ctx, cl, in)
	ret := time.Now()
	out = classifyErr(in, out, err)
	op := porcupine.Operation{ClientId: id, Input: in, Call: call.UnixNano(), Output: out, Return: ret.UnixNano()}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch out.Status {
	case 0:
		return out
	case regUnknown:
		op.Return = math.MaxInt64 // it may take effect at any time after its call
		w.unknown++
	case regOK:
		if in.Kind != regGet {
			if w.acked == nil {
				w.acked = map[string]uint64{}
			}
			w.acked[in.Key] = max(w.acked[in.Key], out.Version)
		}
	}
	w.ops = append(w.ops, op)
	return out
}

func issue(ctx context.Context, cl *client.Client, in regIn) (regOut, error) {
	value := []byte(strconv.FormatInt(in.Value, 10))
	switch in.Kind {
	case regPut:
		v, err := cl.Put(ctx, in.Key, value)
		return regOut{Status: regOK, Value: in.Value, Version: v}, err
	case regCAS:
		v, err := cl.CompareAndSwap(ctx, in.Key, in.Expect, value)
		return regOut{Status: regOK, Value: in.Value, Version: v}, err
	case regIncr:
		n, v, err := cl.Increment(ctx, in.Key, 1)
		return regOut{Status: regOK, Value: n, Version: v}, err
	}
	got, err := cl.Get(ctx, in.Key)
	if err != nil {
		return regOut{}, err
	}
	n, perr := strconv.ParseInt(string(got.Data), 10, 64)
	if perr != nil {
		return regOut{}, fmt.Errorf("get %s: %q is not an integer", in.Key, got.Data)
	}
	return regOut{Status: regOK, Value: n, Version: got.Version}, nil
}

// classifyErr turns a call's error into its outcome. A write that may have
// been sent and got no answer is of unknown outcome.
func classifyErr(in regIn, out regOut, err error) regOut {
	var vm *client.VersionMismatchError
	switch {
	case err == nil:
		return out
	case errors.Is(err, client.ErrNotFound) && in.Kind == regGet:
		return regOut{Status: regNotFound}
	case errors.As(err, &vm):
		return regOut{Status: regMismatch, Version: vm.Current}
	case in.Kind == regGet, errors.Is(err, client.ErrNoQuorum), errors.Is(err, client.ErrUnavailable):
		return regOut{}
	}
	return regOut{Status: regUnknown}
}

// waitSuccesses waits until n more operations were acknowledged.
func (w *workload) waitSuccesses(t *testing.T, n int) {
	t.Helper()
	_, from, _ := w.counts()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, acked, _ := w.counts(); acked >= from+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d operations acknowledged in 20s", n)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

// finalReads reads every key through cl until it answers, records the
// reads, and checks that no acknowledged write is missing: a key's version
// only grows, so it is at least the highest acknowledged one.
func (w *workload) finalReads(t *testing.T, cl *client.Client) {
	t.Helper()
	id := 1 << 20
	for _, key := range w.keys {
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := w.do(cl, id, regIn{Key: key, Kind: regGet})
			w.mu.Lock()
			acked := w.acked[key]
			w.mu.Unlock()
			if out.Status == regOK || out.Status == regNotFound {
				if out.Version < acked {
					t.Errorf("%s: version %d at the end, below the acknowledged %d: a write was lost", key, out.Version, acked)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no read through the last members within 20s", key)
			}
			waitUntil(time.Now().Add(20 * time.Millisecond))
		}
	}
}

func (w *workload) counts() (ops, acked, unknown int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, op := range w.ops {
		if op.Output.(regOut).Status != regUnknown {
			acked++
		}
	}
	return len(w.ops), acked, w.unknown
}

func (w *workload) history() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ops)
}
