package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/client"
)

// The keepalive command: lease renewals per second of N leases on each
// system, each on a fresh three-node cluster in the same run. It grants
// the leases (unmeasured), then -workers closed loops renew them as fast
// as the system answers for -duration, each loop going round its own
// share of the leases (lease i belongs to loop i mod workers), then reads
// a sample back with TimeToLive. Two client paths per system (-paths):
//
//   - once: the client library's one-shot renewal from every loop:
//     clientv3 Lease.KeepAliveOnce (which opens a LeaseKeepAlive stream,
//     sends one request and closes it), the caspaxos client's
//     KeepAliveOnce (a unary LeaseKeepAlive call).
//   - stream: the keep-alive stream the libraries' background helpers
//     use, one per loop, a request and its answer at a time, opened on
//     the library's own connection for etcd (pb.LeaseClient on
//     clientv3's ActiveConnection: etcd answers a stream's requests one
//     after another, so clientv3's single shared stream would renew one
//     lease at a time), on a gRPC connection of ours for caspaxos
//     (LeaseKeepAlives, the stream client.KeepAlive shares; its helpers
//     renew on a timer, every third of the TTL, not on demand).
//
// etcd's clients connect to its leader (a follower forwards keep-alives
// to it); caspaxos's spread over the nodes.
//
//	cd bench && go run ./cmd/bench keepalive                      # 10,000 leases, 10 s per path
//	cd bench && go run ./cmd/bench keepalive -leases 1000 -duration 5s

type keepAliveOptions struct {
	leases, workers, conns, sample int
	ttl, duration                  time.Duration
	systems, paths, out, dataDir   string
	etcdBin, caspBin               string
	keep                           bool
}

type keepAliveReport struct {
	runHeader
	Leases   int                `json:"leases"`
	TTL      float64            `json:"ttl_s"`
	Workers  int                `json:"workers"`
	Duration float64            `json:"duration_s"`
	Runs     []*keepAliveResult `json:"runs"`
}

// keepAliveResult is one system through one client path.
type keepAliveResult struct {
	System string `json:"system"`
	Path   string `json:"path"`
	// GrantSeconds is how long granting every lease took (unmeasured).
	GrantSeconds float64 `json:"grant_s"`
	Renewals     int     `json:"renewals"`
	PerSecond    float64 `json:"renewals_per_second"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	// CPUSeconds of the three members over the measured window, and per
	// renewal.
	CPUSeconds       float64 `json:"cpu_seconds"`
	CPUMicrosPerRenw float64 `json:"cpu_micros_per_renewal"`
	// MaxGapS is the longest time between the sends of two acknowledged
	// renewals of one lease, FirstGapS from a lease's grant to its first
	// renewal (the rest of the grant phase included): a lease lives at
	// least its TTL past the send of its last acknowledged renewal, so
	// with both below the TTL no lease could expire during the run.
	MaxGapS   float64 `json:"max_gap_s"`
	FirstGapS float64 `json:"first_gap_s"`
	// Lost counts renewals answered "lease not found": a lease that had
	// expired. Must be 0.
	Lost   int `json:"lost"`
	Errors int `json:"errors"`
	// FirstError is the first failed renewal's error.
	FirstError string `json:"first_error,omitempty"`
	// Checked leases were read back with TimeToLive after the run, a
	// sample spread over all of them; CheckedLive of them were live. The
	// two must be equal.
	Checked     int    `json:"checked"`
	CheckedLive int    `json:"checked_live"`
	Failure     string `json:"failure,omitempty"`
	// DataKept is where the cluster's data and logs were left, if they
	// were (see keepAliveRun).
	DataKept string `json:"data_kept,omitempty"`
}

// keepAliveDriver renews and reads the leases of one system.
type keepAliveDriver struct {
	// grant grants a lease of the TTL; its ID.
	grant func(ctx context.Context, conn int) (int64, error)
	// renewer returns loop w's renewal function (conn is the connection
	// it uses), which answers lost when the lease was not live, and a
	// function that releases what the loop holds.
	renewer func(ctx context.Context, w, conn int) (renew func(ctx context.Context, id int64) (lost bool, err error), done func(), err error)
	// live reads a lease with TimeToLive.
	live func(ctx context.Context, id int64) (bool, error)
}

func runKeepAlive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &keepAliveOptions{}
	fs := flag.NewFlagSet("bench keepalive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.leases, "leases", 10000, "leases granted and renewed on each system")
	fs.DurationVar(&o.ttl, "ttl", 15*time.Second, "the leases' TTL (whole seconds: etcd's unit); above the grant phase, which the first renewal of the first lease granted waits for")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per system and path")
	fs.IntVar(&o.workers, "workers", 256, "closed loops renewing, each its own share of the leases")
	fs.IntVar(&o.conns, "conns", 4, "client connections per system (loop w uses connection w mod conns)")
	fs.IntVar(&o.sample, "check", 500, "leases read back with TimeToLive after the run, spread over all of them")
	fs.StringVar(&o.systems, "systems", "etcd,caspaxos", "systems to run")
	fs.StringVar(&o.paths, "paths", "once,stream", "client paths: once (the libraries' KeepAliveOnce), stream (a keep-alive stream per loop)")
	fs.StringVar(&o.out, "out", "results", "directory for keepalive.json")
	fs.StringVar(&o.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (a real disk)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&o.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.BoolVar(&o.keep, "keep", false, "keep the clusters' data directories and logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.leases <= 0 || o.workers <= 0 || o.conns <= 0 || o.sample < 0:
		return errors.New("-leases, -workers and -conns must be positive, -check not negative")
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	case o.ttl < 2*time.Second || o.ttl%time.Second != 0:
		return fmt.Errorf("-ttl %v: want whole seconds, at least 2 s (etcd's minimum for its default election timeout)", o.ttl)
	}
	paths := strings.Split(o.paths, ",")
	for _, p := range paths {
		if p != "once" && p != "stream" {
			return fmt.Errorf("-paths %q: want once, stream or both, comma-separated", o.paths)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	r := &runner{opts: &options{etcdBin: o.etcdBin, caspBin: o.caspBin, keep: o.keep}, dataDir: o.dataDir, progress: newProgress(stderr)}
	if err := r.buildBinaries(ctx, stderr); err != nil {
		return err
	}
	rep := &keepAliveReport{runHeader: startRun(), Leases: o.leases, TTL: o.ttl.Seconds(), Workers: o.workers, Duration: o.duration.Seconds()}
	for _, s := range strings.Split(o.systems, ",") {
		if s != "etcd" && s != "caspaxos" {
			return fmt.Errorf("unknown system %q (want etcd, caspaxos)", s)
		}
		// Each path on a fresh cluster: the leases the first path left
		// would otherwise be renewed or reaped under the second.
		for _, p := range paths {
			rep.Load = append(rep.Load, s+" "+p+" before: "+loadAverage())
			res := &keepAliveResult{System: s, Path: p}
			if err := r.keepAliveRun(ctx, o, res); err != nil {
				res.Failure = err.Error()
			}
			rep.Runs = append(rep.Runs, res)
			rep.Load = append(rep.Load, s+" "+p+" after: "+loadAverage())
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	r.progress.clear()
	rep.Finished = time.Now()
	printKeepAliveTable(stdout, rep)
	return writeJSON(stdout, o.out, "keepalive.json", rep)
}

// keepAliveRun starts a fresh cluster of res.System, grants the leases,
// renews them through res.Path for the duration and checks a sample.
// The cluster's data and logs are kept (and named in res.DataKept) when
// the run failed, lost a lease or had errors, as the main benchmark keeps
// them.
func (r *runner) keepAliveRun(ctx context.Context, o *keepAliveOptions, res *keepAliveResult) (err error) {
	start := r.startCaspaxos
	if res.System == "etcd" {
		start = r.startEtcd
	}
	r.progress.show(fmt.Sprintf("%s %s: starting cluster", res.System, res.Path))
	cl, err := start()
	if err != nil {
		return err
	}
	defer func() {
		keep := err != nil || res.Lost > 0 || res.Errors > 0 || res.CheckedLive != res.Checked
		if keep {
			res.DataKept = cl.dir
		}
		cl.stop(o.keep || keep)
	}()
	var d keepAliveDriver
	var closeDriver func()
	if res.System == "etcd" {
		d, closeDriver, err = etcdKeepAlive(ctx, cl, o, res.Path)
	} else {
		d, closeDriver, err = caspaxosKeepAlive(ctx, cl, o, res.Path)
	}
	if err != nil {
		return err
	}
	defer closeDriver()
	if err := keepAliveLoad(ctx, o, d, cl, r.progress, res); err != nil {
		return err
	}
	return cl.alive()
}

// keepAliveLoad grants, renews and checks, filling res.
func keepAliveLoad(ctx context.Context, o *keepAliveOptions, d keepAliveDriver, cl *cluster, p *progress, res *keepAliveResult) error {
	label := fmt.Sprintf("%s %s", res.System, res.Path)
	// Grant, unmeasured: 64 granters, each lease's grant send time kept
	// as its first "renewal".
	ids := make([]int64, o.leases)
	sent := make([]time.Time, o.leases)
	grantStart := time.Now()
	var next atomic.Int64
	var grantErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.leases || ctx.Err() != nil {
					return
				}
				if i%1000 == 0 {
					p.show(fmt.Sprintf("%s: granting %d/%d", label, i, o.leases))
				}
				gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				sent[i] = time.Now()
				id, err := d.grant(gctx, g%o.conns)
				cancel()
				if err != nil {
					mu.Lock()
					grantErr = cmpErr(grantErr, fmt.Errorf("granting lease %d: %w", i, err))
					mu.Unlock()
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	if grantErr != nil {
		return grantErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res.GrantSeconds = time.Since(grantStart).Seconds()

	// Renew, measured: loop w renews leases w, w+W, ... in turn until the
	// end; no two loops share a lease, so each lease's last send time is
	// its loop's alone.
	workers := min(o.workers, o.leases)
	type loopOut struct {
		lat              []time.Duration
		lost, errs       int
		maxGap, firstGap time.Duration
		firstErr         error
	}
	renewed := make([]bool, o.leases)
	outs := make([]loopOut, workers)
	renews := make([]func(context.Context, int64) (bool, error), workers)
	for w := range workers {
		renew, done, err := d.renewer(ctx, w, w%o.conns)
		if err != nil {
			return fmt.Errorf("loop %d: %w", w, err)
		}
		defer done()
		renews[w] = renew
	}
	cpu0 := cl.cpuSeconds()
	begin := time.Now()
	end := begin.Add(o.duration)
	var count atomic.Int64
	stopBar := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopBar:
				return
			case <-t.C:
				p.bar(label, "measure", time.Since(begin), o.duration, count.Load())
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			out := &outs[w]
			for i := w; time.Now().Before(end) && ctx.Err() == nil; i += workers {
				if i >= o.leases {
					i = w
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				lost, err := renews[w](rctx, ids[i])
				t1 := time.Now()
				cancel()
				switch {
				case err != nil:
					out.errs++
					out.firstErr = cmpErr(out.firstErr, err)
				case lost:
					out.lost++
				default:
					if renewed[i] {
						out.maxGap = max(out.maxGap, t0.Sub(sent[i]))
					} else {
						out.firstGap = max(out.firstGap, t0.Sub(sent[i]))
					}
					sent[i], renewed[i] = t0, true
					if t1.Before(end) {
						out.lat = append(out.lat, t1.Sub(t0))
						count.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stopBar)
	elapsed := time.Since(begin)
	res.CPUSeconds = cl.cpuSeconds() - cpu0
	var lat []time.Duration
	var maxGap, firstGap time.Duration
	for _, out := range outs {
		lat = append(lat, out.lat...)
		res.Lost += out.lost
		res.Errors += out.errs
		maxGap, firstGap = max(maxGap, out.maxGap), max(firstGap, out.firstGap)
		if out.firstErr != nil && res.FirstError == "" {
			res.FirstError = out.firstErr.Error()
		}
	}
	slices.Sort(lat)
	res.Renewals = len(lat)
	res.PerSecond = float64(len(lat)) / o.duration.Seconds()
	if n := len(lat); n > 0 {
		res.P50Ms, res.P99Ms = ms(lat[n/2]), ms(lat[min(n-1, n*99/100)])
		// The CPU window runs to the last loop's return, a little past
		// the end: per renewal over every renewal that finished in it.
		res.CPUMicrosPerRenw = res.CPUSeconds / (float64(n) * elapsed.Seconds() / o.duration.Seconds()) * 1e6
	}
	res.MaxGapS, res.FirstGapS = maxGap.Seconds(), firstGap.Seconds()

	// Check a sample spread over every lease: still live after the run.
	if o.sample > 0 {
		step := max(1, o.leases/o.sample)
		for i := 0; i < o.leases && res.Checked < o.sample; i += step {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			live, err := d.live(cctx, ids[i])
			cancel()
			if err != nil {
				return fmt.Errorf("TimeToLive of lease %x: %w", ids[i], err)
			}
			res.Checked++
			if live {
				res.CheckedLive++
			}
		}
	}
	return nil
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// etcdKeepAlive connects o.conns clientv3 clients to etcd's leader.
func etcdKeepAlive(ctx context.Context, cl *cluster, o *keepAliveOptions, path string) (keepAliveDriver, func(), error) {
	var clis []*clientv3.Client
	closeAll := func() {
		for _, c := range clis {
			c.Close()
		}
	}
	probe, err := clientv3.New(clientv3.Config{Endpoints: cl.clients, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return keepAliveDriver{}, nil, err
	}
	err = cl.waitReady(ctx, func(ctx context.Context) error { _, err := probe.Put(ctx, "bench/ready", "1"); return err })
	probe.Close()
	if err != nil {
		return keepAliveDriver{}, nil, err
	}
	leader, err := etcdLeaderEndpoint(ctx, cl.clients, nil)
	if err != nil {
		return keepAliveDriver{}, nil, err
	}
	for range o.conns {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			closeAll()
			return keepAliveDriver{}, nil, err
		}
		clis = append(clis, c)
	}
	ttl := int64(o.ttl / time.Second)
	d := keepAliveDriver{
		grant: func(ctx context.Context, conn int) (int64, error) {
			g, err := clis[conn].Grant(ctx, ttl)
			if err != nil {
				return 0, err
			}
			return int64(g.ID), nil
		},
		live: func(ctx context.Context, id int64) (bool, error) {
			t, err := clis[0].TimeToLive(ctx, clientv3.LeaseID(id))
			if err != nil {
				return false, err
			}
			return t.TTL > 0, nil
		},
	}
	switch path {
	case "once":
		d.renewer = func(_ context.Context, _, conn int) (func(context.Context, int64) (bool, error), func(), error) {
			return func(ctx context.Context, id int64) (bool, error) {
				_, err := clis[conn].KeepAliveOnce(ctx, clientv3.LeaseID(id))
				if errors.Is(err, rpctypes.ErrLeaseNotFound) {
					return true, nil
				}
				return false, err
			}, func() {}, nil
		}
	default:
		d.renewer = func(ctx context.Context, _, conn int) (func(context.Context, int64) (bool, error), func(), error) {
			var ls loopStream[pb.Lease_LeaseKeepAliveClient]
			open := func(ctx context.Context) (pb.Lease_LeaseKeepAliveClient, error) {
				return pb.NewLeaseClient(clis[conn].ActiveConnection()).LeaseKeepAlive(ctx)
			}
			if err := ls.open(ctx, open); err != nil {
				return nil, nil, err
			}
			return func(opCtx context.Context, id int64) (bool, error) {
				r, err := roundTrip(ctx, opCtx, &ls, open, &pb.LeaseKeepAliveRequest{ID: id})
				if err != nil {
					return false, err
				}
				return r.TTL <= 0, nil
			}, ls.close, nil
		}
	}
	return d, closeAll, nil
}

// caspaxosKeepAlive connects o.conns caspaxos clients, client i's first
// endpoint node i mod 3, and for the stream path as many plain gRPC
// connections, connection i to node i mod 3.
func caspaxosKeepAlive(ctx context.Context, cl *cluster, o *keepAliveOptions, path string) (keepAliveDriver, func(), error) {
	var clis []*client.Client
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range clis {
			c.Close()
		}
		for _, c := range conns {
			c.Close()
		}
	}
	for i := range o.conns {
		j := i % len(cl.clients)
		c, err := client.New(client.Config{Endpoints: append(slices.Clone(cl.clients[j:]), cl.clients[:j]...)})
		if err != nil {
			closeAll()
			return keepAliveDriver{}, nil, err
		}
		clis = append(clis, c)
		if path == "stream" {
			gc, err := grpc.NewClient(cl.clients[j], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				closeAll()
				return keepAliveDriver{}, nil, err
			}
			conns = append(conns, gc)
		}
	}
	ready := func(ctx context.Context) error { _, err := clis[0].Put(ctx, "bench/ready", []byte("1")); return err }
	if err := cl.waitReady(ctx, ready); err != nil {
		closeAll()
		return keepAliveDriver{}, nil, err
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, cl.clients, nil) }); err != nil {
		closeAll()
		return keepAliveDriver{}, nil, err
	}
	d := keepAliveDriver{
		grant: func(ctx context.Context, conn int) (int64, error) {
			l, err := clis[conn].Grant(ctx, o.ttl)
			return int64(l.ID), err
		},
		live: func(ctx context.Context, id int64) (bool, error) {
			_, err := clis[0].TimeToLive(ctx, uint64(id))
			if errors.Is(err, client.ErrLeaseNotFound) {
				return false, nil
			}
			return err == nil, err
		},
	}
	switch path {
	case "once":
		d.renewer = func(_ context.Context, _, conn int) (func(context.Context, int64) (bool, error), func(), error) {
			return func(ctx context.Context, id int64) (bool, error) {
				_, err := clis[conn].KeepAliveOnce(ctx, uint64(id))
				if errors.Is(err, client.ErrLeaseNotFound) {
					return true, nil
				}
				return false, err
			}, func() {}, nil
		}
	default:
		d.renewer = func(ctx context.Context, _, conn int) (func(context.Context, int64) (bool, error), func(), error) {
			var ls loopStream[caspaxospb.Lease_LeaseKeepAlivesClient]
			open := func(ctx context.Context) (caspaxospb.Lease_LeaseKeepAlivesClient, error) {
				return caspaxospb.NewLeaseClient(conns[conn]).LeaseKeepAlives(ctx)
			}
			if err := ls.open(ctx, open); err != nil {
				return nil, nil, err
			}
			return func(opCtx context.Context, id int64) (bool, error) {
				r, err := roundTrip(ctx, opCtx, &ls, open, &caspaxospb.LeaseKeepAliveRequest{Id: uint64(id)})
				switch {
				case err != nil:
					return false, err
				case r.GetError().GetCode() == "lease_not_found":
					return true, nil
				case r.GetError() != nil:
					return false, fmt.Errorf("%s: %s", r.GetError().GetCode(), r.GetMessage())
				}
				return false, nil
			}, ls.close, nil
		}
	}
	return d, closeAll, nil
}

// loopStream is one loop's keep-alive stream: a request and its answer
// at a time; a stream that failed is closed and the next renewal opens
// another, as the libraries' helpers do.
type loopStream[S any] struct {
	s      S
	ok     bool
	cancel context.CancelFunc
}

func (l *loopStream[S]) open(ctx context.Context, open func(context.Context) (S, error)) error {
	sctx, cancel := context.WithCancel(ctx)
	s, err := open(sctx)
	if err != nil {
		cancel()
		return err
	}
	l.s, l.ok, l.cancel = s, true, cancel
	return nil
}

func (l *loopStream[S]) close() {
	if l.ok {
		l.cancel()
		l.ok = false
	}
}

// roundTrip sends req on the loop's stream (opened under ctx again if
// the last one failed) and waits for its answer, at most until opCtx
// ends (the stream is then cancelled); any error closes the stream.
func roundTrip[Req, Resp any, S interface {
	Send(*Req) error
	Recv() (*Resp, error)
}](ctx, opCtx context.Context, l *loopStream[S], open func(context.Context) (S, error), req *Req) (*Resp, error) {
	if !l.ok {
		if err := l.open(ctx, open); err != nil {
			return nil, err
		}
	}
	defer context.AfterFunc(opCtx, l.cancel)()
	if err := l.s.Send(req); err != nil {
		l.close()
		return nil, err
	}
	r, err := l.s.Recv()
	if err != nil {
		l.close()
		return nil, err
	}
	return r, nil
}

func printKeepAliveTable(w io.Writer, rep *keepAliveReport) {
	fmt.Fprintf(w, "keepalive: %d leases of %.0f s, %d loops renewing for %.0f s (load: %s)\n",
		rep.Leases, rep.TTL, rep.Workers, rep.Duration, strings.Join(rep.Load, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tpath\tgrant s\trenewals\trenewals/s\tp50 ms\tp99 ms\tcpu s\tcpu µs/renewal\tfirst gap s\tmax gap s\tlost\terrors\tlive after\t")
	for _, r := range rep.Runs {
		if r.Failure != "" {
			fmt.Fprintf(tw, "%s\t%s\tfailed: %s\t\t\t\t\t\t\t\t\t\t\t\t\n", r.System, r.Path, firstLine(r.Failure))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%.0f\t%.2f\t%.2f\t%d\t%d\t%d/%d\t\n", r.System, r.Path, r.GrantSeconds,
			r.Renewals, r.PerSecond, r.P50Ms, r.P99Ms, r.CPUSeconds, r.CPUMicrosPerRenw, r.FirstGapS, r.MaxGapS, r.Lost, r.Errors, r.CheckedLive, r.Checked)
	}
	tw.Flush()
	for _, r := range rep.Runs {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s %s: first error: %s\n", r.System, r.Path, firstLine(r.FirstError))
		}
		if r.DataKept != "" {
			fmt.Fprintf(w, "%s %s: data and logs kept in %s\n", r.System, r.Path, r.DataKept)
		}
	}
}
