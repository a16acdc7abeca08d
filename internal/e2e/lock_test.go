package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lockHolder is a `caspaxos lock` process whose command prints its fencing
// token and then sleeps.
type lockHolder struct {
	cmd    *exec.Cmd
	token  uint64
	exited chan error
}

// startLockHolder runs `caspaxos lock` on name and waits (up to a
// minute) for its command to print the token.
func startLockHolder(t *testing.T, endpoint, name string) *lockHolder {
	t.Helper()
	cmd := exec.Command(binaryPath, "lock", "--ttl", "1s", "--lock-delay", "200ms", "--kill-after", "2s", name, "--",
		"sh", "-c", `echo "$CASPAXOS_FENCING_TOKEN"; exec sleep 60`)
	cmd.Env = append(os.Environ(), "CASPAXOS_ENDPOINTS="+endpoint)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &lockHolder{cmd: cmd, exited: make(chan error, 1)}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, out)
		h.exited <- cmd.Wait()
	}()
	select {
	case s := <-line:
		if h.token, err = strconv.ParseUint(strings.TrimSpace(s), 10, 64); err != nil {
			t.Fatalf("lock's command printed %q, not a token", s)
		}
	case <-time.After(time.Minute):
		t.Fatal("lock: no token within a minute")
	}
	return h
}

// fencedWrite writes data to key as the holder of token does: it reads the
// key (its value is "TOKEN:DATA"), refuses if it holds a higher token, and
// writes with If-Match on the version it read, so that a write between its
// read and its put fails too. This is the resource-side check a fencing
// token is for (docs/locks.md).
func fencedWrite(base, key string, token uint64, data string) error {
	resp, err := http.Get(base + "/v1/kv/" + key)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ := http.NewRequest("PUT", base+"/v1/kv/"+key, strings.NewReader(fmt.Sprintf("%d:%s", token, data)))
	switch resp.StatusCode {
	case 404:
		req.Header.Set("If-None-Match", "*")
	case 200:
		seen, _, _ := strings.Cut(string(body), ":")
		if n, _ := strconv.ParseUint(seen, 10, 64); n > token {
			return fmt.Errorf("fenced: token %d is below %d, which wrote %q", token, n, body)
		}
		req.Header.Set("If-Match", resp.Header.Get("ETag"))
	default:
		return fmt.Errorf("read %s: %d %s", key, resp.StatusCode, body)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("write %s: %d", key, resp.StatusCode)
	}
	return nil
}

// TestLockFencing: a lock holder SIGSTOPped past its lease's TTL loses the
// lock; a second holder acquires it with a higher token; the first's late
// write guarded by its token is refused; once resumed, the first `caspaxos
// lock` finds its lease lost, stops its command and exits 11.
func TestLockFencing(t *testing.T) {
	c := newCluster(t, 3)
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	base := "http://" + c.procs[0].client
	a := startLockHolder(t, c.procs[0].client, "res")
	if err := fencedWrite(base, "guarded", a.token, "a1"); err != nil {
		t.Fatalf("the first holder's write: %v", err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	b := startLockHolder(t, c.procs[1].client, "res")
	if waited := time.Since(stopped); waited < time.Second || b.token <= a.token {
		t.Fatalf("the second holder got token %d (the first's %d) %v after the first stopped, within its TTL of 1s", b.token, a.token, waited)
	}
	t.Logf("second holder's token %d (first's %d), %v after the first stopped", b.token, a.token, time.Since(stopped).Round(time.Millisecond))
	if err := fencedWrite(base, "guarded", b.token, "b1"); err != nil {
		t.Fatalf("the second holder's write: %v", err)
	}
	if err := fencedWrite(base, "guarded", a.token, "a2"); err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("the first holder's late write: %v, want it fenced off", err)
	}
	resp, err := http.Get("http://" + c.procs[2].client + "/v1/lock/res")
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Token  uint64
		Holder string
	}
	_ = json.NewDecoder(resp.Body).Decode(&shown)
	resp.Body.Close()
	if shown.Token != b.token || shown.Holder == "" {
		t.Fatalf("GET /v1/lock/res at another node: %+v, want the second holder's token %d", shown, b.token)
	}
	// Resumed, the first finds its lease lost: it stops its command and
	// exits 11.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 11 {
			t.Fatalf("the first lock after its lease was lost: %v, want exit code 11", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first lock did not stop within 10s of resuming")
	}
	// SIGTERM to the second: its command is stopped, the lock released.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the second lock did not stop within 10s of SIGTERM")
	}
	resp, err = http.Get(base + "/v1/lock/res")
	if err != nil {
		t.Fatal(err)
	}
	shown.Holder = ""
	_ = json.NewDecoder(resp.Body).Decode(&shown)
	resp.Body.Close()
	if shown.Holder != "" || shown.Token <= b.token {
		t.Fatalf("after the second's exit: %+v, want released", shown)
	}
	testElectCLI(t, c.procs[0].client, c.procs[2].client)
}

// testElectCLI: `caspaxos elect NAME PROPOSAL` leads and prints the leader;
// `caspaxos elect NAME` at another node observes it, and its resignation
// on SIGTERM.
func testElectCLI(t *testing.T, campaignAt, observeAt string) {
	start := func(endpoint string, args ...string) (*exec.Cmd, *bufio.Reader) {
		cmd := exec.Command(binaryPath, append([]string{"elect"}, args...)...)
		cmd.Env = append(os.Environ(), "CASPAXOS_ENDPOINTS="+endpoint)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, bufio.NewReader(out)
	}
	line := func(r *bufio.Reader, want string) {
		t.Helper()
		got := make(chan string, 1)
		go func() { s, _ := r.ReadString('\n'); got <- s }()
		select {
		case s := <-got:
			if !strings.HasPrefix(s, want) {
				t.Fatalf("elect printed %q, want %q", s, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("elect printed nothing within 20s, want %q", want)
		}
	}
	leader, lout := start(campaignAt, "--ttl", "2s", "scheduler", "host-a:7000")
	line(lout, "host-a:7000 token=")
	_, oout := start(observeAt, "scheduler")
	line(oout, "host-a:7000 token=")
	if err := leader.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	line(oout, "- token=") // resigned
}
