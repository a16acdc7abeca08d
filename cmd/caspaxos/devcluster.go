package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/internal/certs"
)

// child is one node's process.
type child struct {
	node devNode
	cmd  *exec.Cmd
	logs []*lineWriter
	done chan struct{} // closed once the process has exited and its output is flushed
	err  error         // what Wait returned; read it only after done
}

func (ch *child) exited() bool {
	select {
	case <-ch.done:
		return true
	default:
	}
	return false
}

// devCluster is the set of children of the dev command.
type devCluster struct {
	children []*child
	exits    chan *child // each child once, when it exits
	log      io.Writer   // dev's own messages
}

// startCluster starts one child per node. On failure it stops those it
// started.
func startCluster(exe string, nodes []devNode, stdout, stderr io.Writer) (*devCluster, error) {
	cl := &devCluster{exits: make(chan *child, len(nodes)), log: stderr}
	for _, n := range nodes {
		ch, err := startChild(exe, n, serveArgs(n, nodes), stdout, stderr)
		if err != nil {
			_ = cl.stop(devStopTimeout)
			return nil, fmt.Errorf("dev: starting %s: %w", n.name, err)
		}
		cl.children = append(cl.children, ch)
		go cl.wait(ch)
	}
	return cl, nil
}

// startChild runs "serve" for n. The child gets its own process group, so
// that a Ctrl-C in the terminal reaches only dev, which then stops the
// children in order: otherwise they would exit at the same moment on their
// own, and dev could not tell that from a crash.
func startChild(exe string, n devNode, args []string, stdout, stderr io.Writer) (*child, error) {
	if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
		return nil, err
	}
	prefix := n.name + " | "
	ch := &child{node: n, done: make(chan struct{})}
	ch.logs = []*lineWriter{{prefix: prefix, dst: stdout}, {prefix: prefix, dst: stderr}}
	ch.cmd = exec.Command(exe, args...)
	ch.cmd.Stdout, ch.cmd.Stderr = ch.logs[0], ch.logs[1]
	ch.cmd.SysProcAttr = childProcAttr()
	ch.cmd.WaitDelay = time.Second // if a grandchild holds the output pipes open
	if err := ch.cmd.Start(); err != nil {
		return nil, err
	}
	return ch, nil
}

// wait reaps ch and reports its exit.
func (cl *devCluster) wait(ch *child) {
	ch.err = ch.cmd.Wait()
	for _, l := range ch.logs {
		l.flush()
	}
	status := "exited"
	if ch.err != nil {
		status = ch.err.Error()
	}
	fmt.Fprintf(cl.log, "dev: %s (pid %d): %s\n", ch.node.name, ch.cmd.Process.Pid, status)
	close(ch.done)
	cl.exits <- ch
}

func (cl *devCluster) pids() []int {
	out := make([]int, len(cl.children))
	for i, ch := range cl.children {
		out[i] = ch.cmd.Process.Pid
	}
	return out
}

// stop sends SIGTERM to every child still running, waits up to grace for
// all of them, then kills the rest. It returns an error naming those it
// had to kill.
func (cl *devCluster) stop(grace time.Duration) error {
	for _, ch := range cl.children {
		if !ch.exited() {
			if err := terminate(ch.cmd.Process); err != nil && !errors.Is(err, os.ErrProcessDone) {
				_ = ch.cmd.Process.Kill()
			}
		}
	}
	deadline, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var killed []string
	for _, ch := range cl.children {
		select {
		case <-ch.done:
			continue
		case <-deadline.Done():
		}
		fmt.Fprintf(cl.log, "dev: %s did not stop within %s; killing it\n", ch.node.name, grace)
		_ = ch.cmd.Process.Kill()
		<-ch.done
		killed = append(killed, ch.node.name)
	}
	if len(killed) > 0 {
		return fmt.Errorf("dev: killed %s after they did not stop within %s", strings.Join(killed, ", "), grace)
	}
	return nil
}

// waitHealthy polls every node's GET /v1/health until all answer 200. It
// fails if a child exits first, or after timeout.
func (cl *devCluster) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	scheme := "http"
	if len(cl.children) > 0 && cl.children[0].node.tls != nil {
		f := cl.children[0].node.tls
		cfg, err := certs.ClientFiles(f.CA, f.Client.CertFile, f.Client.KeyFile)
		if err != nil {
			return err
		}
		tr.TLSClientConfig, scheme = cfg, "https"
	}
	hc := &http.Client{Timeout: time.Second, Transport: tr}
	pending := slices.Clone(cl.children)
	last := make(map[string]error)
	tick := time.NewTicker(devPollInterval)
	defer tick.Stop()
	for {
		pending = slices.DeleteFunc(pending, func(ch *child) bool {
			last[ch.node.name] = checkHealth(ctx, hc, scheme+"://"+ch.node.clientAddr)
			return last[ch.node.name] == nil
		})
		if len(pending) == 0 {
			return nil
		}
		select {
		case ch := <-cl.exits:
			return fmt.Errorf("dev: %s exited before the cluster was healthy (%v); see its output above", ch.node.name, ch.err)
		case <-ctx.Done():
			var why []string
			for _, ch := range pending {
				why = append(why, fmt.Sprintf("%s: %v", ch.node.name, last[ch.node.name]))
			}
			return fmt.Errorf("dev: the cluster was not healthy after %s (%s)", timeout, strings.Join(why, "; "))
		case <-tick.C:
		}
	}
}

// checkHealth returns nil if GET /v1/health at base (scheme://host:port)
// answers 200.
func checkHealth(ctx context.Context, hc *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// syncWriter serializes writes to w. The dev command's own messages and all
// the children's lines share one mutex, so whole lines never interleave.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// maxLineBytes bounds a child's unfinished line: once that much has come
// without a newline, it is written out as a line of its own.
const maxLineBytes = 64 << 10

// lineWriter writes each line of a child's output to dst with a prefix, in
// one Write. Only exec's copying goroutine writes to it; flush runs after
// that goroutine is done (after Wait).
type lineWriter struct {
	prefix string
	dst    io.Writer
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	rest := l.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 && len(rest) < maxLineBytes {
			break
		}
		if i < 0 {
			i = len(rest)
		}
		l.emit(rest[:i])
		rest = rest[min(i+1, len(rest)):]
	}
	l.buf = append(l.buf[:0], rest...)
	return len(p), nil
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

func (l *lineWriter) emit(line []byte) {
	out := make([]byte, 0, len(l.prefix)+len(line)+1)
	out = append(append(append(out, l.prefix...), line...), '\n')
	_, _ = l.dst.Write(out)
}
