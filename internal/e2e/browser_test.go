package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// browser is headless Chromium driven over the DevTools protocol: enough
// of it to load a page, run JavaScript in it and wait on what it shows.

// chromiumPath finds Debian's chromium (installed by .ci/run where
// missing) or another Chromium or Chrome.
func chromiumPath() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// newBrowser starts headless Chromium, or skips the test saying why it
// cannot run here.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, ok := chromiumPath()
	if !ok {
		t.Skip("no chromium on PATH: the status page test needs headless Chromium (Debian: apt-get install chromium; .ci/run installs it where it may)")
	}
	cmd := exec.Command(path, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
		"--remote-allow-origins=*", "--ignore-certificate-errors", "--user-data-dir="+t.TempDir(), "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Its own process group, so that its helpers go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("chromium (%s) does not start here: %v", path, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	found := make(chan string, 1)
	var early strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
			early.WriteString(sc.Text() + "\n")
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(30 * time.Second):
		t.Skipf("chromium (%s) started but never opened its DevTools port: it cannot run here:\n%s", path, early.String())
	}
	// The page target's own socket, from the DevTools HTTP endpoint.
	host := strings.TrimPrefix(browserWS, "ws://")
	host = host[:strings.Index(host, "/")]
	resp, err := http.Get("http://" + host + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd}
	for _, tg := range targets {
		if tg.Type == "page" {
			if b.ws, err = websocket.Dial(tg.WS, "", "http://localhost/"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.ws.Close() })
			return b
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// call sends one DevTools command and returns its result, skipping the
// events that come in between.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
	_ = b.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			b.t.Fatalf("%s: %v", method, err)
		}
		if msg.ID != id {
			continue
		}
		if msg.Error != nil {
			b.t.Fatalf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result
	}
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	b.call("Page.navigate", map[string]any{"url": url})
}

// eval runs expr in the page (awaiting a promise) and decodes its value
// into out; an exception fails the test.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	raw := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		b.t.Fatal(err)
	}
	if r.Exception != nil {
		b.t.Fatalf("%s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("%s: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// waitFor evaluates cond until it is true; on the deadline the test
// fails, showing what describe evaluates to.
func (b *browser) waitFor(what, cond, describe string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		b.eval("(() => { try { return !!("+cond+"); } catch (e) { return false; } })()", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var got any
			b.eval(describe, &got)
			b.t.Fatalf("the page never showed %s; it shows: %v", what, fmt.Sprint(got))
		}
		waitUntil(time.Now().Add(50 * time.Millisecond))
	}
}
