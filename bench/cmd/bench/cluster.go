package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caspaxos/caspaxos/client"
)

// cluster is three server processes on loopback with their data in dir.
type cluster struct {
	system  string
	dir     string
	mu      sync.Mutex // guards procs while it grows (lab fronts read it)
	procs   []*exec.Cmd
	clients []string // client addresses, host:port
	metrics []string // caspaxos: metrics URLs
	// etcd is, for a caspaxos cluster started with its etcd API on
	// (startCaspaxosEtcd), each node's --etcd-addr, host:port.
	etcd []string
	// tls is a client's TLS configuration (CA and client certificate) when
	// the cluster serves TLS on both ports (-tls), else nil.
	tls *tls.Config
}

// member is how to start one process.
type member struct {
	bin  string
	args []string
	log  string
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// startEtcd starts a three-member etcd with default settings (real fsync).
// With -tls each member also serves its HTTP API on a port of its own
// (--listen-client-http-urls), unless -etcd-http-on-client-port: etcd
// serves gRPC and HTTP on one TLS port by handing gRPC to net/http
// (grpc.Server.ServeHTTP), far slower than its own transport, and warns
// that this is not for production (etcd-io/etcd#15402); without TLS it
// splits the port with cmux and gRPC keeps its own transport.
func (r *runner) startEtcd() (*cluster, error) {
	bin := r.etcdBin
	dir, err := os.MkdirTemp(r.dataDir, "etcd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if r.certs != nil {
		scheme = "https"
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=%s://127.0.0.1:%d", i+1, scheme, ports[3+i]))
	}
	c := &cluster{system: "etcd", dir: dir, tls: r.clientTLS()}
	var ms []member
	for i := range 3 {
		name := fmt.Sprintf("e%d", i+1)
		cu := fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[i])
		pu := fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3+i])
		c.clients = append(c.clients, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		args := []string{
			"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "bench", "--log-level", "warn",
		}
		if f := r.certs; f != nil {
			// Client certificates required on both ports, as caspaxos is
			// run: the same handshakes on both sides of the comparison.
			nf := f.Nodes[name]
			args = append(args, "--cert-file", nf.CertFile, "--key-file", nf.KeyFile, "--trusted-ca-file", f.CA, "--client-cert-auth",
				"--peer-cert-file", nf.CertFile, "--peer-key-file", nf.KeyFile, "--peer-trusted-ca-file", f.CA, "--peer-client-cert-auth")
			if !r.opts.etcdHTTPOnClientPort {
				args = append(args, "--listen-client-http-urls", fmt.Sprintf("https://127.0.0.1:%d", ports[6+i]))
			}
		}
		ms = append(ms, member{bin: bin, log: filepath.Join(dir, name+".log"), args: args})
	}
	return c, c.start(ms)
}

// startCaspaxos starts a three-node caspaxos cluster with default settings.
func (r *runner) startCaspaxos() (*cluster, error) { return r.startCaspaxosWith(false) }

// startCaspaxosEtcd starts one that also serves etcd's v3 API on a port of
// each node's own (--etcd-addr, docs/etcd.md), listed in cluster.etcd.
func (r *runner) startCaspaxosEtcd() (*cluster, error) { return r.startCaspaxosWith(true) }

func (r *runner) startCaspaxosWith(etcdAPI bool) (*cluster, error) {
	bin := r.caspaxosBin
	dir, err := os.MkdirTemp(r.dataDir, "caspaxos-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, ports[3+i]))
	}
	c := &cluster{system: "caspaxos", dir: dir, tls: r.clientTLS()}
	scheme := "http"
	if r.certs != nil {
		scheme = "https"
	}
	var ms []member
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		c.clients = append(c.clients, addr)
		c.metrics = append(c.metrics, scheme+"://"+addr+"/metrics")
		args := []string{"serve", "--name", name, "--data-dir", filepath.Join(dir, name),
			"--client-addr", addr, "--peer-addr", fmt.Sprintf("127.0.0.1:%d", ports[3+i]),
			"--cluster", strings.Join(peers, ","), "--log-level", "warn"}
		if etcdAPI {
			ea := fmt.Sprintf("127.0.0.1:%d", ports[6+i])
			c.etcd = append(c.etcd, ea)
			args = append(args, "--etcd-addr", ea)
		}
		if f := r.certs; f != nil {
			// The flags caspaxos dev --tls passes: TLS on both ports, client
			// certificates required on both (peers always need one).
			nf := f.Nodes[name]
			args = append(args, "--cert-file", nf.CertFile, "--key-file", nf.KeyFile, "--trusted-ca-file", f.CA, "--client-cert-auth",
				"--peer-cert-file", nf.CertFile, "--peer-key-file", nf.KeyFile, "--peer-trusted-ca-file", f.CA)
		}
		if r.pprofPort > 0 {
			args = append(args, "--pprof-addr", fmt.Sprintf("127.0.0.1:%d", r.pprofPort+i))
		}
		ms = append(ms, member{bin: bin, log: filepath.Join(dir, name+".log"), args: args})
	}
	return c, c.start(ms)
}

func (c *cluster) start(ms []member) error {
	for _, m := range ms {
		log, err := os.Create(m.log)
		if err != nil {
			c.stop(false)
			return err
		}
		cmd := exec.Command(m.bin, m.args...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			log.Close()
			c.stop(false)
			return fmt.Errorf("starting %s: %w", m.bin, err)
		}
		log.Close()
		c.mu.Lock()
		c.procs = append(c.procs, cmd)
		c.mu.Unlock()
	}
	return nil
}

// stop sends SIGTERM, waits up to 10 s, then kills; it removes the data
// unless keep.
func (c *cluster) stop(keep bool) {
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if !keep {
		os.RemoveAll(c.dir)
	}
}

// logTail returns the last lines of each member's log, for error messages.
func (c *cluster) logTail() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), strings.Join(lines[max(0, len(lines)-5):], "\n"))
	}
	return b.String()
}

// alive returns an error if a member has exited.
func (c *cluster) alive() error {
	for i, p := range c.procs {
		if err := syscall.Kill(p.Process.Pid, 0); err != nil {
			return fmt.Errorf("%s member %d (pid %d) is gone", c.system, i+1, p.Process.Pid)
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid)); err == nil {
			if f := statFields(string(st)); len(f) > 0 && f[0] == "Z" {
				return fmt.Errorf("%s member %d exited\n%s", c.system, i+1, c.logTail())
			}
		}
	}
	return nil
}

// waitReady runs probe until it succeeds, a member dies, or 60 s pass.
func (c *cluster) waitReady(ctx context.Context, probe func(context.Context) error) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := c.alive(); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return fmt.Errorf("%s cluster not ready: %v\n%s", c.system, last, c.logTail())
}

// cpuSeconds is the user+system CPU time of the members so far.
func (c *cluster) cpuSeconds() float64 {
	var ticks float64
	for _, p := range c.procs {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid))
		if err != nil {
			continue
		}
		f := statFields(string(st))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			ticks += u + s
		}
	}
	return ticks / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// statFields returns the fields of /proc/PID/stat after the command name,
// starting with the state (field 3 of proc(5)).
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// peakRSSMiB is the largest VmHWM of the members, in MiB.
func (c *cluster) peakRSSMiB() float64 {
	var peak float64
	for _, p := range c.procs {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Process.Pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				peak = max(peak, kb/1024)
			}
		}
		f.Close()
	}
	return peak
}

// allReachable reports an error unless every caspaxos node at addrs sees
// every member reachable. tlsCfg is the client's TLS (nil: plain).
func allReachable(ctx context.Context, addrs []string, tlsCfg *tls.Config) error {
	for _, a := range addrs {
		c, err := client.New(client.Config{Endpoints: []string{a}, TLS: tlsCfg})
		if err != nil {
			return err
		}
		ms, err := c.Members(ctx)
		c.Close()
		if err != nil {
			return fmt.Errorf("members from %s: %w", a, err)
		}
		for _, m := range ms {
			if !m.Reachable {
				return fmt.Errorf("%s does not reach %s yet", a, m.Name)
			}
		}
	}
	return nil
}
