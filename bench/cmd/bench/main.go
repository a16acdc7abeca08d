// Command bench runs caspaxos and etcd side by side on this machine: for
// every cell (a workload at a number of clients) it starts a fresh
// three-member etcd, runs the load, stops it, then does the same with a
// fresh three-node caspaxos cluster, all on 127.0.0.1 with real fsync. It
// prints a table, and writes results.json and report.html to -out.
//
//	cd bench && go run ./cmd/bench -duration 10s -out results/
//	cd bench && go run ./cmd/bench -quick
//
// Two experiments run through proxies on every peer link (see README.md):
//
//	cd bench && go run ./cmd/bench isolation   # isolate one node: unavailability
//	cd bench && go run ./cmd/bench wan         # WAN round trips: latency per region
//
// And one that lists keys in pages, etcd's paged range against caspaxos's
// listing (see README.md):
//
//	cd bench && go run ./cmd/bench list        # 100,000 keys (-million: 1,000,000)
//
// And one that measures watch delivery latency, clientv3's Watch against
// the caspaxos client's Watch (see README.md):
//
//	cd bench && go run ./cmd/bench watch       # 1 and 1000 watchers, 200 puts
//
// And lease keep-alives per second, and etcd's own client against
// caspaxos's etcd API port beside etcd (see README.md):
//
//	cd bench && go run ./cmd/bench keepalive   # 10,000 leases
//	cd bench && go run ./cmd/bench etcdapi     # clientv3 put@64, get@64 on both
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/benchload"
	"github.com/caspaxos/caspaxos/internal/certs"
)

// options are the flags.
type options struct {
	duration, warmup   time.Duration
	clients, workloads string
	systems            string
	mode               string // grpc, http, h2c, a list of them, or both: how caspaxos is driven
	etcdClients        string // leader or spread: where etcd's clients connect
	quick              bool
	out                string
	conns, repeat      int
	etcdBin, caspBin   string
	dataDir            string
	keep               bool
	pprofPort          int
	seed               uint64
	tls                bool
	// etcdHTTPOnClientPort leaves etcd's HTTP API on its TLS client port
	// (see startEtcd).
	etcdHTTPOnClientPort bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per cell and system")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before each measurement")
	fs.StringVar(&o.clients, "clients", "1,16,64,256", "comma-separated numbers of concurrent clients")
	fs.StringVar(&o.workloads, "workloads", "all", "comma-separated: put, create, get, incr, mixed, zipf, or all")
	fs.StringVar(&o.systems, "systems", "etcd,caspaxos", "systems to run, in this order per cell")
	fs.StringVar(&o.mode, "mode", "grpc", "how caspaxos is driven: grpc (the Go client), http (its HTTP API through plain net/http over HTTP/1.1, reported as caspaxos-http), h2c (the same over HTTP/2 cleartext, caspaxos-h2c), etcd (etcd's clientv3 against its --etcd-addr, caspaxos-etcd), a comma-separated list of them, or both (grpc,http); etcd always through clientv3")
	fs.StringVar(&o.etcdClients, "etcd-clients", "leader", "where etcd's clients connect: leader (every client to the member that leads when the load starts, found with clientv3 Status, as etcd's docs recommend for throughput) or spread (each client over all members, starting at a different one)")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 2s cells, 1s warm-up, clients 1, 16 and 64 (explicit flags win)")
	fs.StringVar(&o.out, "out", "results", "directory for results.json and report.html")
	fs.IntVar(&o.conns, "conns", 4, "client connections per system (at most one per client)")
	fs.IntVar(&o.repeat, "repeat", 1, "runs per cell and system; the run with the median ops/s is reported")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&o.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.StringVar(&o.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (use a real disk: fsync must mean something)")
	fs.BoolVar(&o.keep, "keep", false, "keep the clusters' data directories and logs")
	fs.IntVar(&o.pprofPort, "pprof-port", 0, "if set, caspaxos node i serves net/http/pprof on 127.0.0.1:(port+i)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the clients' key choice")
	fs.BoolVar(&o.etcdHTTPOnClientPort, "etcd-http-on-client-port", false, "with -tls: leave etcd's HTTP API on its client port, where etcd serves gRPC through net/http (slow; etcd's default, which it warns against)")
	fs.BoolVar(&o.tls, "tls", false, "TLS on both ports of both systems, client certificates required on both, from a throwaway CA; the clients connect with a client certificate")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = time.Second
		}
		if !set["clients"] {
			o.clients = "1,16,64"
		}
	}
	if _, err := modesOf(o.mode); err != nil {
		return nil, err
	}
	if o.etcdClients != "leader" && o.etcdClients != "spread" {
		return nil, fmt.Errorf("-etcd-clients %q: want leader or spread", o.etcdClients)
	}
	if o.tls && slices.Contains(mustModes(o.mode), "h2c") {
		return nil, errors.New("-mode h2c is plain HTTP/2: not with -tls (over TLS the client port speaks HTTP/2 only to gRPC)")
	}
	if o.conns <= 0 || o.repeat <= 0 || o.duration <= 0 || o.warmup < 0 {
		return nil, errors.New("-conns, -repeat and -duration must be positive, -warmup not negative")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "isolation":
			return runIsolation(ctx, args[1:], stdout, stderr)
		case "wan":
			return runWAN(ctx, args[1:], stdout, stderr)
		case "list":
			return runList(ctx, args[1:], stdout, stderr)
		case "watch":
			return runWatch(ctx, args[1:], stdout, stderr)
		case "lock":
			return runLock(ctx, args[1:], stdout, stderr)
		case "keepalive":
			return runKeepAlive(ctx, args[1:], stdout, stderr)
		case "etcdapi":
			// The main benchmark with etcd's client on both systems:
			// these defaults first, so that flags given after them win.
			args = append([]string{"-workloads", "put,get", "-clients", "64", "-mode", "etcd", "-out", "results-etcdapi"}, args[1:]...)
		}
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	workloads, err := benchload.ParseWorkloads(o.workloads)
	if err != nil {
		return err
	}
	clients, err := benchload.ParseInts(o.clients)
	if err != nil {
		return err
	}
	systems, err := systemsOf(o.systems, o.mode)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	r := &runner{opts: o, dataDir: o.dataDir, pprofPort: o.pprofPort, progress: newProgress(stderr)}
	if err := r.buildBinaries(ctx, stderr); err != nil {
		return err
	}
	if o.tls {
		cleanup, err := r.makeCerts()
		if err != nil {
			return err
		}
		defer cleanup()
	}
	rep := newReport(o, systems)
	total := len(workloads) * len(clients) * len(systems) * o.repeat
	for _, w := range workloads {
		for _, c := range clients {
			cell := r.runCell(ctx, w, c, systems, total)
			rep.Cells = append(rep.Cells, cell)
			if err := ctx.Err(); err != nil {
				return err
			}
			// Write as we go: a long run interrupted still leaves results.
			if err := rep.write(o.out); err != nil {
				return err
			}
		}
	}
	r.progress.clear()
	rep.Finished = time.Now()
	printTable(stdout, rep)
	if err := rep.write(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(o.out, "results.json"), filepath.Join(o.out, "report.html"))
	return nil
}

// The names under which results of caspaxos driven through its HTTP API
// are reported: over HTTP/1.1 (-mode http) and over HTTP/2 cleartext
// (-mode h2c).
const (
	caspaxosHTTP = "caspaxos-http"
	caspaxosH2C  = "caspaxos-h2c"
	// caspaxosEtcd is caspaxos driven by etcd's own client (clientv3)
	// through its etcd API port (-mode etcd; issue 23's gateway benchmark).
	caspaxosEtcd = "caspaxos-etcd"
)

// modesOf parses -mode: a comma-separated list of grpc, http, h2c and
// etcd, in run order; both is grpc,http.
func modesOf(mode string) ([]string, error) {
	if mode == "both" {
		return []string{"grpc", "http"}, nil
	}
	var out []string
	for _, m := range strings.Split(mode, ",") {
		switch {
		case m != "grpc" && m != "http" && m != "h2c" && m != "etcd":
			return nil, fmt.Errorf("-mode %q: want grpc, http, h2c, etcd, a comma-separated list of them, or both", mode)
		case slices.Contains(out, m):
			return nil, fmt.Errorf("-mode %q: %s twice", mode, m)
		}
		out = append(out, m)
	}
	return out, nil
}

// mustModes is modesOf for a -mode already checked.
func mustModes(mode string) []string {
	m, _ := modesOf(mode)
	return m
}

// systemsOf parses -systems and expands caspaxos by -mode: each mode runs
// caspaxos on a fresh cluster of its own, in the order of -mode.
func systemsOf(list, mode string) ([]string, error) {
	modes, err := modesOf(mode)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		switch s {
		case "etcd":
			out = append(out, s)
		case "caspaxos":
			for _, m := range modes {
				out = append(out, map[string]string{"grpc": "caspaxos", "http": caspaxosHTTP, "h2c": caspaxosH2C, "etcd": caspaxosEtcd}[m])
			}
		default:
			return nil, fmt.Errorf("unknown system %q (want etcd, caspaxos)", s)
		}
	}
	return out, nil
}

// runner starts clusters and runs cells.
type runner struct {
	opts                 *options
	etcdBin, caspaxosBin string
	dataDir              string
	pprofPort            int
	progress             *progress
	done                 int
	// certs (with -tls) are every member's certificate and a client's,
	// from one throwaway CA; nil without -tls.
	certs     *certs.DevFiles
	tlsClient *tls.Config
}

// makeCerts writes a throwaway CA and certificates for every member of
// both systems (n1-n3, e1-e3; each also names 127.0.0.1) and a client,
// once for the run; the returned function deletes them.
func (r *runner) makeCerts() (func(), error) {
	dir, err := os.MkdirTemp(r.dataDir, "bench-tls-")
	if err != nil {
		return nil, err
	}
	f, err := certs.WriteDev(dir, []string{"n1", "n2", "n3", "e1", "e2", "e3"}, time.Now())
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg, err := certs.ClientFiles(f.CA, f.Client.CertFile, f.Client.KeyFile)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.certs, r.tlsClient = &f, cfg
	return func() { os.RemoveAll(dir) }, nil
}

// clientTLS is a client's TLS configuration (the CA, the client
// certificate), or nil without -tls.
func (r *runner) clientTLS() *tls.Config { return r.tlsClient }

// buildBinaries builds etcd (this module's cmd/etcd) and caspaxos (the
// parent module's cmd/caspaxos) into a temporary directory unless given.
func (r *runner) buildBinaries(ctx context.Context, stderr io.Writer) error {
	r.etcdBin, r.caspaxosBin = r.opts.etcdBin, r.opts.caspBin
	if r.etcdBin != "" && r.caspaxosBin != "" {
		return nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	benchDir := filepath.Dir(strings.TrimSpace(string(gomod)))
	if filepath.Base(benchDir) != "bench" {
		return errors.New("run from the bench directory (cd bench && go run ./cmd/bench), or pass -etcd-bin and -caspaxos-bin")
	}
	binDir := filepath.Join(os.TempDir(), "caspaxos-bench-bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	build := func(dir, pkg, out string) error {
		fmt.Fprintf(stderr, "building %s ...\n", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, stderr, stderr
		return cmd.Run()
	}
	if r.etcdBin == "" {
		r.etcdBin = filepath.Join(binDir, "etcd")
		if err := build(benchDir, "./cmd/etcd", r.etcdBin); err != nil {
			return fmt.Errorf("building etcd: %w", err)
		}
	}
	if r.caspaxosBin == "" {
		r.caspaxosBin = filepath.Join(binDir, "caspaxos")
		if err := build(filepath.Dir(benchDir), "./cmd/caspaxos", r.caspaxosBin); err != nil {
			return fmt.Errorf("building caspaxos: %w", err)
		}
	}
	return nil
}

// runCell runs one workload at one client count on every system, repeat
// times each, interleaved, and keeps the median run of each system.
func (r *runner) runCell(ctx context.Context, w benchload.Workload, clients int, systems []string, total int) *cell {
	c := &cell{Workload: w, Clients: clients, Systems: map[string]*systemResult{}}
	runs := map[string][]*systemResult{}
	for rep := range r.opts.repeat {
		for _, s := range systems {
			if ctx.Err() != nil {
				return c
			}
			r.done++
			label := fmt.Sprintf("[%d/%d] %-5s c=%-3d %-13s", r.done, total, w, clients, s)
			res := r.runSystem(ctx, s, w, clients, uint64(rep), label)
			runs[s] = append(runs[s], res)
			r.progress.line(fmt.Sprintf("%s %s", label, res.brief()))
		}
	}
	for s, rs := range runs {
		c.Systems[s] = median(rs)
	}
	c.ratios()
	return c
}

// runSystem starts a fresh cluster of system, runs the cell, stops it.
func (r *runner) runSystem(ctx context.Context, system string, w benchload.Workload, clients int, rep uint64, label string) *systemResult {
	out := &systemResult{System: system}
	r.progress.show(label + " starting cluster")
	start := r.startCaspaxos
	switch system {
	case "etcd":
		start = r.startEtcd
	case caspaxosEtcd:
		start = r.startCaspaxosEtcd
	}
	cl, err := start()
	if err != nil {
		out.Failure = err.Error()
		return out
	}
	defer func() { cl.stop(r.opts.keep || out.Failure != "" || out.failedOps() > 0) }()
	fail := func(err error) *systemResult {
		out.Failure = fmt.Sprintf("%v (data and logs kept in %s)", err, cl.dir)
		return out
	}
	conns := min(r.opts.conns, clients)
	var drivers []benchload.Driver
	var closeDrivers func()
	switch system {
	case "etcd":
		drivers, closeDrivers, err = dialEtcd(ctx, cl.clients, conns, cl.tls, r.opts.etcdClients == "leader")
	case caspaxosHTTP:
		drivers, closeDrivers, err = benchload.DialHTTP(cl.clients, conns, cl.tls)
	case caspaxosH2C:
		drivers, closeDrivers, err = benchload.DialH2C(cl.clients, conns)
	case caspaxosEtcd:
		// The etcd driver unchanged, each client over every node's etcd
		// port starting at a different one: caspaxos has no leader to
		// connect to (its Status names the answering node), and any node
		// serves any key.
		drivers, closeDrivers, err = dialEtcd(ctx, cl.etcd, conns, cl.tls, false)
	default:
		drivers, closeDrivers, err = benchload.DialCaspaxos(client.Config{Endpoints: cl.clients, TLS: cl.tls}, conns)
	}
	if err != nil {
		return fail(err)
	}
	defer closeDrivers()
	if err := cl.waitReady(ctx, func(ctx context.Context) error { return drivers[0].Put(ctx, "bench/ready", []byte("1")) }); err != nil {
		return fail(err)
	}
	if system != "etcd" {
		// A node whose links are still in their start-up backoff proposes
		// a key itself instead of forwarding it to the key's home, and the
		// two proposers then duel on a hot key: start when every node
		// reaches every peer.
		if err := cl.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, cl.clients, cl.tls) }); err != nil {
			return fail(err)
		}
	}
	var cpu0 float64
	var m0 map[string]float64
	cfg := benchload.Config{
		Workload: w, Clients: clients, Duration: r.opts.duration, Warmup: r.opts.warmup, Seed: r.opts.seed + rep,
		OnMeasure: func(start bool) {
			if start {
				cpu0, m0 = cl.cpuSeconds(), scrapeCounters(ctx, cl.metrics, cl.tls)
				return
			}
			out.CPUSeconds = cl.cpuSeconds() - cpu0
			if len(cl.metrics) > 0 {
				out.Counters = diffCounters(m0, scrapeCounters(ctx, cl.metrics, cl.tls))
			}
		},
		Progress: func(phase string, elapsed, total time.Duration, ops int64) {
			r.progress.bar(label, phase, elapsed, total, ops)
		},
	}
	res, err := benchload.Run(ctx, cfg, drivers)
	if res != nil {
		out.Result = res
		out.PeakRSSMiB = cl.peakRSSMiB()
		if res.Ops > 0 {
			out.CPUMicrosPerOp = out.CPUSeconds / float64(res.Ops) * 1e6
		}
		out.Spectrum = spectrum(res.Hist)
	}
	if err == nil {
		err = cl.alive()
	}
	if err != nil {
		return fail(err)
	}
	return out
}
