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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caspaxos/caspaxos/client"
)

// The watch command: watch delivery latency. W watchers, spread over the
// three nodes (one client per node, each watcher on its node's client),
// watch one key; a writer puts it P times, paced. For each put and each
// watcher the latency is the time the watcher first saw that version or a
// later one, minus the time the put was acknowledged to the writer (it can
// be negative: a watcher may hear of a write before its writer does).
// caspaxos coalesces a key's states (a watcher gets the latest, not every
// one): a put a watcher first saw as a later version is counted as
// delivered by it, and as merged. etcd is watched through clientv3's
// Watch, caspaxos through its Go client's Watch; each system gets one
// fresh cluster, on which the watcher counts run one after the other.
//
//	cd bench && go run ./cmd/bench watch                          # 1 and 1000 watchers, 200 puts
//	cd bench && go run ./cmd/bench watch -watchers 1,100 -puts 100

// watchOptions are the watch command's flags.
type watchOptions struct {
	watchers              []int
	puts, valueBytes      int
	every, settle         time.Duration
	systems, out, dataDir string
	etcdBin, caspBin      string
	keep                  bool
	watchersFlag          string
}

// watchReport is watch.json.
type watchReport struct {
	runHeader
	Puts       int            `json:"puts"`
	EveryMs    float64        `json:"put_every_ms"`
	ValueBytes int            `json:"value_bytes"`
	Runs       []*watchResult `json:"runs"`
}

// watchResult is one system at one number of watchers.
type watchResult struct {
	System   string `json:"system"`
	Watchers int    `json:"watchers"`
	Puts     int    `json:"puts"`
	// Deliveries are (watcher, put) pairs whose put the watcher saw (as
	// itself or as a later version); Merged of them as a later version;
	// Missing: not seen within -settle after the last put.
	Deliveries int     `json:"deliveries"`
	Merged     int     `json:"merged"`
	Missing    int     `json:"missing"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	MinMs      float64 `json:"min_ms"`
	PutP50Ms   float64 `json:"put_p50_ms"`
	Failure    string  `json:"failure,omitempty"`
}

// seen is one event a watcher received: the version (caspaxos) or
// revision (etcd) and when.
type seen struct {
	version uint64
	at      time.Time
}

// watcherLog is what one watcher saw; last is its highest version so
// far, read by the writer side while the watcher runs.
type watcherLog struct {
	events []seen
	last   atomic.Uint64
	ready  atomic.Bool
}

func (l *watcherLog) add(v uint64, at time.Time) {
	l.events = append(l.events, seen{v, at})
	if v > l.last.Load() {
		l.last.Store(v)
	}
}

// watchKey is the watched key.
const watchKey = "bench/watch"

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &watchOptions{}
	fs := flag.NewFlagSet("bench watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.watchersFlag, "watchers", "1,1000", "comma-separated numbers of watchers, each run in turn")
	fs.IntVar(&o.puts, "puts", 200, "puts of the watched key per run")
	fs.DurationVar(&o.every, "every", 20*time.Millisecond, "pace of the puts (one per interval; a slower put delays the next)")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "how long after the last put every watcher has to see it")
	fs.IntVar(&o.valueBytes, "value-bytes", 256, "bytes per value")
	fs.StringVar(&o.systems, "systems", "etcd,caspaxos", "systems to run")
	fs.StringVar(&o.out, "out", "results", "directory for watch.json")
	fs.StringVar(&o.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (a real disk)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&o.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.BoolVar(&o.keep, "keep", false, "keep the clusters' data directories and logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(o.watchersFlag, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n <= 0 || n > 100000 {
			return fmt.Errorf("-watchers %q: want positive numbers up to 100000, comma-separated", o.watchersFlag)
		}
		o.watchers = append(o.watchers, n)
	}
	if o.puts <= 0 || o.puts > 100000 || o.every <= 0 || o.settle <= 0 || o.valueBytes < 0 {
		return errors.New("-puts must be within 1..100000, -every and -settle positive, -value-bytes not negative")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	r := &runner{opts: &options{etcdBin: o.etcdBin, caspBin: o.caspBin, keep: o.keep}, dataDir: o.dataDir, progress: newProgress(stderr)}
	if err := r.buildBinaries(ctx, stderr); err != nil {
		return err
	}
	rep := &watchReport{runHeader: startRun(), Puts: o.puts, EveryMs: float64(o.every) / 1e6, ValueBytes: o.valueBytes}
	err := eachSystem(ctx, o.systems, &rep.Load, func(s string) {
		if s == "etcd" {
			rep.Runs = append(rep.Runs, r.watchEtcd(ctx, o)...)
		} else {
			rep.Runs = append(rep.Runs, r.watchCaspaxos(ctx, o)...)
		}
	})
	if err != nil {
		return err
	}
	r.progress.clear()
	rep.Finished = time.Now()
	printWatchTable(stdout, rep)
	return writeJSON(stdout, o.out, "watch.json", rep)
}

// watchSystem is how one system is watched and written.
type watchSystem struct {
	name string
	// watch starts watcher i, recording into log until ctx ends; it marks
	// log ready once the watch is in place (seen by the server).
	watch func(ctx context.Context, i int, log *watcherLog)
	// put writes the key once and returns the version a watcher will see
	// for it.
	put func(ctx context.Context, value []byte) (uint64, error)
}

// watchRun runs every watcher count of o against one system.
func watchRun(ctx context.Context, o *watchOptions, p *progress, sys watchSystem) []*watchResult {
	var out []*watchResult
	for _, w := range o.watchers {
		res := &watchResult{System: sys.name, Watchers: w, Puts: o.puts}
		out = append(out, res)
		if err := watchOnce(ctx, o, p, sys, res); err != nil {
			res.Failure = err.Error()
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func watchOnce(ctx context.Context, o *watchOptions, p *progress, sys watchSystem, res *watchResult) error {
	value := []byte(strings.Repeat("w", o.valueBytes))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	base, err := sys.put(pctx, value)
	cancel()
	if err != nil {
		return fmt.Errorf("first put: %w", err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	logs := make([]*watcherLog, res.Watchers)
	var wg sync.WaitGroup
	for i := range logs {
		logs[i] = &watcherLog{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sys.watch(wctx, i, logs[i])
		}()
	}
	defer wg.Wait()
	defer stop()
	// Every watch in place (and, for caspaxos, its first event, the key's
	// current state, received) before the first measured put.
	p.show(fmt.Sprintf("%s: %d watchers starting", sys.name, res.Watchers))
	if err := waitFor(ctx, 60*time.Second, func() bool {
		for _, l := range logs {
			if !l.ready.Load() || (sys.name == "caspaxos" && l.last.Load() < base) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("watches not in place: %w", err)
	}
	type ack struct {
		version uint64
		at      time.Time
		took    time.Duration
	}
	acks := make([]ack, 0, o.puts)
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	for i := range o.puts {
		p.show(fmt.Sprintf("%s: %d watchers, put %d/%d", sys.name, res.Watchers, i+1, o.puts))
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		v, err := sys.put(pctx, value)
		at := time.Now()
		cancel()
		if err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
		acks = append(acks, ack{v, at, at.Sub(start)})
	}
	last := acks[len(acks)-1].version
	p.show(fmt.Sprintf("%s: %d watchers, waiting for the last put", sys.name, res.Watchers))
	_ = waitFor(ctx, o.settle, func() bool {
		for _, l := range logs {
			if l.last.Load() < last {
				return false
			}
		}
		return true
	})
	stop()
	wg.Wait()
	var lat []time.Duration
	for _, l := range logs {
		j := 0
		for _, a := range acks {
			for j < len(l.events) && l.events[j].version < a.version {
				j++
			}
			if j == len(l.events) {
				res.Missing++
				continue
			}
			res.Deliveries++
			if l.events[j].version != a.version {
				res.Merged++
			}
			lat = append(lat, l.events[j].at.Sub(a.at))
		}
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		res.P50Ms = ms(lat[n/2])
		res.P99Ms = ms(lat[min(n-1, n*99/100)])
		res.MaxMs, res.MinMs = ms(lat[n-1]), ms(lat[0])
	}
	took := make([]time.Duration, len(acks))
	for i, a := range acks {
		took[i] = a.took
	}
	slices.Sort(took)
	res.PutP50Ms = ms(took[len(took)/2])
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// waitFor polls cond every 10 ms until it holds (nil) or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// watchEtcd watches through clientv3: one client per member (watcher i on
// member i mod 3), each watcher its own Watch (its own watcher on the
// member, multiplexed with the others over the client's watch stream);
// the writer is a client connected to the leader. A watcher's version is
// the event's mod revision; a put's is its response's revision.
func (r *runner) watchEtcd(ctx context.Context, o *watchOptions) []*watchResult {
	fail := func(err error) []*watchResult {
		return []*watchResult{{System: "etcd", Failure: err.Error()}}
	}
	cl, err := r.startEtcd()
	if err != nil {
		return fail(err)
	}
	failed := true
	defer func() { cl.stop(o.keep || failed) }()
	var clis []*clientv3.Client
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	for _, ep := range cl.clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fail(err)
		}
		clis = append(clis, c)
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { _, err := clis[0].Put(ctx, "bench/ready", "1"); return err }); err != nil {
		return fail(err)
	}
	leader, err := etcdLeaderEndpoint(ctx, cl.clients, nil)
	if err != nil {
		return fail(err)
	}
	writer, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	defer writer.Close()
	out := watchRun(ctx, o, r.progress, watchSystem{
		name: "etcd",
		watch: func(ctx context.Context, i int, log *watcherLog) {
			for resp := range clis[i%len(clis)].Watch(ctx, watchKey, clientv3.WithCreatedNotify()) {
				at := time.Now()
				if resp.Created {
					log.ready.Store(true)
				}
				for _, ev := range resp.Events {
					log.add(uint64(ev.Kv.ModRevision), at)
				}
			}
		},
		put: func(ctx context.Context, value []byte) (uint64, error) {
			resp, err := writer.Put(ctx, watchKey, string(value))
			if err != nil {
				return 0, err
			}
			return uint64(resp.Header.Revision), nil
		},
	})
	failed = slices.ContainsFunc(out, func(r *watchResult) bool { return r.Failure != "" })
	return out
}

// watchCaspaxos watches through the Go client: one client per node whose
// first endpoint is that node (watcher i on node i mod 3), each watcher
// its own Watch of the key; the writer is a client of its own, which
// sends the puts to the key's home node.
func (r *runner) watchCaspaxos(ctx context.Context, o *watchOptions) []*watchResult {
	fail := func(err error) []*watchResult {
		return []*watchResult{{System: "caspaxos", Failure: err.Error()}}
	}
	cl, err := r.startCaspaxos()
	if err != nil {
		return fail(err)
	}
	failed := true
	defer func() { cl.stop(o.keep || failed) }()
	writer, err := client.New(client.Config{Endpoints: cl.clients})
	if err != nil {
		return fail(err)
	}
	defer writer.Close()
	if err := cl.waitReady(ctx, func(ctx context.Context) error { _, err := writer.Put(ctx, "bench/ready", []byte("1")); return err }); err != nil {
		return fail(err)
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, cl.clients, nil) }); err != nil {
		return fail(err)
	}
	var clis []*client.Client
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	for i := range cl.clients {
		eps := append(slices.Clone(cl.clients[i:]), cl.clients[:i]...)
		c, err := client.New(client.Config{Endpoints: eps})
		if err != nil {
			return fail(err)
		}
		clis = append(clis, c)
	}
	out := watchRun(ctx, o, r.progress, watchSystem{
		name: "caspaxos",
		watch: func(ctx context.Context, i int, log *watcherLog) {
			log.ready.Store(true) // in place once its first event (the current state) arrives
			for ev, err := range clis[i%len(clis)].Watch(ctx, []string{watchKey}, client.WatchOptions{}) {
				if err != nil {
					return
				}
				log.add(ev.Version, time.Now())
			}
		},
		put: func(ctx context.Context, value []byte) (uint64, error) {
			return writer.Put(ctx, watchKey, value)
		},
	})
	failed = slices.ContainsFunc(out, func(r *watchResult) bool { return r.Failure != "" })
	return out
}

func printWatchTable(w io.Writer, rep *watchReport) {
	fmt.Fprintf(w, "watch delivery: %d puts of one key, one every %.0f ms; latency = a watcher first sees the put's version (or a later one) − the put's ack (load: %s)\n",
		rep.Puts, rep.EveryMs, strings.Join(rep.Load, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\twatchers\tdeliveries\tmerged\tmissing\tp50 ms\tp99 ms\tmax ms\tmin ms\tput p50 ms\t")
	for _, r := range rep.Runs {
		if r.Failure != "" {
			fmt.Fprintf(tw, "%s\t%d\tfailed: %s\t\t\t\t\t\t\t\t\n", r.System, r.Watchers, r.Failure)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", r.System, r.Watchers, r.Deliveries, r.Merged, r.Missing,
			r.P50Ms, r.P99Ms, r.MaxMs, r.MinMs, r.PutP50Ms)
	}
	tw.Flush()
}
