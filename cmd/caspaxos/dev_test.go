//go:build unix

package main

import (
	"bytes"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDev runs the real binary: `caspaxos dev` starts three serve children,
// the CLI talks to them, and the children are gone when dev is done.
func TestDev(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 3-node cluster")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "caspaxos")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("put and get, then SIGTERM stops every node", func(t *testing.T) {
		d := startDev(t, bin)
		// A new key's version is max(1, the proposer's ballot counter)
		// (PROTOCOL.md §7): positive, not necessarily 1, since the nodes'
		// own reads at start (the auth state) may have used counters.
		r := runBinary(t, bin, "--endpoints", d.endpoints, "put", "greeting", "hello")
		v, err := strconv.ParseUint(strings.TrimSuffix(r.stdout, "\n"), 10, 64)
		if r.code != 0 || err != nil || v == 0 {
			t.Fatalf("put: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		last := d.endpoints[strings.LastIndex(d.endpoints, ",")+1:]
		r = runBinary(t, bin, "--endpoints", last, "get", "greeting")
		if r.code != 0 || r.stdout != "hello" {
			t.Fatalf("get from another node: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := d.wait(t); code != 0 {
			t.Fatalf("dev exited %d after SIGTERM; stderr:\n%s", code, d.stderr.String())
		}
		if !strings.Contains(d.stderr.String(), "dev: all nodes stopped") {
			t.Errorf("stderr lacks the stop message:\n%s", d.stderr.String())
		}
		d.checkChildrenGone(t)
	})

	t.Run("--tls: the CLI needs the printed CA and client certificate", func(t *testing.T) {
		d := startDev(t, bin, "--tls")
		m := regexp.MustCompile(`caspaxos (--cacert \S+ --cert \S+ --key \S+) put`).FindStringSubmatch(d.stdout.String())
		if m == nil || !strings.Contains(d.stdout.String(), "curl --cacert") {
			t.Fatalf("the banner lacks the CLI's and curl's TLS lines:\n%s", d.stdout.String())
		}
		tlsFlags := strings.Fields(m[1])
		r := runBinary(t, bin, append(append([]string{"--endpoints", d.endpoints}, tlsFlags...), "put", "greeting", "hello")...)
		if v, err := strconv.ParseUint(strings.TrimSuffix(r.stdout, "\n"), 10, 64); r.code != 0 || err != nil || v == 0 {
			t.Fatalf("put over TLS: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if r = runBinary(t, bin, "--endpoints", d.endpoints, "--timeout", "2s", "get", "greeting"); r.code == 0 {
			t.Fatalf("a get without TLS was answered: %q", r.stdout)
		}
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := d.wait(t); code != 0 {
			t.Fatalf("dev exited %d after SIGTERM; stderr:\n%s", code, d.stderr.String())
		}
		d.checkChildrenGone(t)
	})

	t.Run("a node that dies stops the others", func(t *testing.T) {
		d := startDev(t, bin)
		if err := syscall.Kill(d.pids[1], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := d.wait(t); code != exitError {
			t.Fatalf("dev exited %d after a node died, want %d", code, exitError)
		}
		if want := "caspaxos: dev: n2 exited unexpectedly"; !strings.Contains(d.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, d.stderr.String())
		}
		d.checkChildrenGone(t)
	})
}

// devRun is a running `caspaxos dev`.
type devRun struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{} // closed when dev has exited
	err            error         // Wait's result, once done
	endpoints      string
	pids           []int
}

// startDev starts dev on free ports and waits for its banner.
func startDev(t *testing.T, bin string, extra ...string) *devRun {
	t.Helper()
	clientBase, peerBase := freePortRanges(t, 3)
	d := &devRun{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"dev", "--data-dir", t.TempDir(),
		"--base-client-port", strconv.Itoa(clientBase), "--base-peer-port", strconv.Itoa(peerBase)}, extra...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.kill(t) })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.stdout.String(), "Ctrl-C stops the cluster") {
		select {
		case <-d.done:
			t.Fatalf("dev exited before it was healthy (%v); stderr:\n%s", d.err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev not healthy after 60s; stderr:\n%s", d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	banner := d.stdout.String()
	for _, m := range regexp.MustCompile(`(?m)^  n\d\s+(\d+)\s`).FindAllStringSubmatch(banner, -1) {
		pid, _ := strconv.Atoi(m[1])
		d.pids = append(d.pids, pid)
	}
	m := regexp.MustCompile(`export CASPAXOS_ENDPOINTS=(\S+)`).FindStringSubmatch(banner)
	if len(d.pids) != 3 || m == nil {
		t.Fatalf("banner without 3 pids and the endpoints:\n%s", banner)
	}
	d.endpoints = m[1]
	return d
}

// wait waits for dev to exit and returns its exit code.
func (d *devRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("dev still running after 30s; stderr:\n%s", d.stderr.String())
	}
	var exit *exec.ExitError
	if errors.As(d.err, &exit) {
		return exit.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("dev: %v", d.err)
	}
	return 0
}

// checkChildrenGone checks that no node process is left after dev exited
// (dev reaps its children, so a pid that still exists is a leak).
func (d *devRun) checkChildrenGone(t *testing.T) {
	t.Helper()
	for i, pid := range d.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("n%d (pid %d) is still there after dev exited (kill -0: %v)", i+1, pid, err)
		}
	}
}

// kill cleans up after a failed test: dev and its children.
func (d *devRun) kill(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	for _, pid := range d.pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-d.done
}

func runBinary(t *testing.T, bin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// freePortRanges finds n consecutive free ports for clients and n for
// peers, all distinct.
func freePortRanges(t *testing.T, n int) (clientBase, peerBase int) {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var bases []int
	for attempt := 0; attempt < 100 && len(bases) < 2; attempt++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lis)
		base := lis.Addr().(*net.TCPAddr).Port
		if base+n-1 > 65535 {
			continue
		}
		ok := true
		for p := base + 1; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if ok = err == nil; ok {
				held = append(held, l)
			}
		}
		if ok {
			bases = append(bases, base)
		}
	}
	if len(bases) < 2 {
		t.Fatal("no free port ranges")
	}
	return bases[0], bases[1]
}

// lockedBuffer is a bytes.Buffer safe for exec's copying goroutine and the
// test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
