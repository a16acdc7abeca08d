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
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/caspaxos/caspaxos/client"
)

// The lock command: acquire/release cycles per second of C contenders on
// one lock, caspaxos's (client.Session.Lock, docs/locks.md) beside etcd's
// concurrency.Mutex, each on a fresh three-node cluster in the same run.
// Every contender has a session (a lease kept alive) of its own and loops:
// lock, check that nobody else holds it and that its token is above the
// last one seen, unlock. Contender i talks to node i mod 3.
//
//	cd bench && go run ./cmd/bench lock                       # 16 contenders, 10 s
//	cd bench && go run ./cmd/bench lock -contenders 1,16 -duration 5s

type lockOptions struct {
	contenders            []int
	duration              time.Duration
	systems, out, dataDir string
	etcdBin, caspBin      string
	keep                  bool
	contendersFlag        string
}

type lockReport struct {
	runHeader
	Duration float64       `json:"duration_s"`
	Runs     []*lockResult `json:"runs"`
}

// lockResult is one system at one number of contenders.
type lockResult struct {
	System     string  `json:"system"`
	Contenders int     `json:"contenders"`
	Acquires   int     `json:"acquires"`
	PerSecond  float64 `json:"acquires_per_second"`
	// Wait is from a lock call to its return (the wait for the others
	// included); Hold from the return to the unlock's return.
	WaitP50Ms float64 `json:"wait_p50_ms"`
	WaitP99Ms float64 `json:"wait_p99_ms"`
	UnlockP50 float64 `json:"unlock_p50_ms"`
	// Overlaps: acquires that found another contender holding; Backwards:
	// tokens not above the last one seen. Both must be 0.
	Overlaps  int    `json:"overlaps"`
	Backwards int    `json:"tokens_backwards"`
	Errors    int    `json:"errors"`
	Failure   string `json:"failure,omitempty"`
}

// lockDriver is one contender's lock on one system.
type lockDriver struct {
	lock   func(ctx context.Context) (token uint64, err error)
	unlock func(ctx context.Context) error
	close  func()
}

func runLock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &lockOptions{}
	fs := flag.NewFlagSet("bench lock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.contendersFlag, "contenders", "16", "comma-separated numbers of contenders, each run in turn")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per run")
	fs.StringVar(&o.systems, "systems", "etcd,caspaxos", "systems to run")
	fs.StringVar(&o.out, "out", "results", "directory for lock.json")
	fs.StringVar(&o.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (a real disk)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&o.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.BoolVar(&o.keep, "keep", false, "keep the clusters' data directories and logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(o.contendersFlag, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n <= 0 || n > 10000 {
			return fmt.Errorf("-contenders %q: want positive numbers up to 10000, comma-separated", o.contendersFlag)
		}
		o.contenders = append(o.contenders, n)
	}
	if o.duration <= 0 {
		return errors.New("-duration must be positive")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	r := &runner{opts: &options{etcdBin: o.etcdBin, caspBin: o.caspBin, keep: o.keep}, dataDir: o.dataDir, progress: newProgress(stderr)}
	if err := r.buildBinaries(ctx, stderr); err != nil {
		return err
	}
	rep := &lockReport{runHeader: startRun(), Duration: o.duration.Seconds()}
	err := eachSystem(ctx, o.systems, &rep.Load, func(s string) {
		if s == "etcd" {
			rep.Runs = append(rep.Runs, r.lockEtcd(ctx, o)...)
		} else {
			rep.Runs = append(rep.Runs, r.lockCaspaxos(ctx, o)...)
		}
	})
	if err != nil {
		return err
	}
	r.progress.clear()
	rep.Finished = time.Now()
	printLockTable(stdout, rep)
	return writeJSON(stdout, o.out, "lock.json", rep)
}

// lockRun runs every contender count of o against one system; newDriver
// makes contender i's lock.
func lockRun(ctx context.Context, o *lockOptions, p *progress, system string, newDriver func(ctx context.Context, i int) (lockDriver, error)) []*lockResult {
	var out []*lockResult
	for _, n := range o.contenders {
		res := &lockResult{System: system, Contenders: n}
		out = append(out, res)
		p.show(fmt.Sprintf("%s: %d contenders", system, n))
		if err := lockOnce(ctx, o, n, newDriver, res); err != nil {
			res.Failure = err.Error()
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func lockOnce(ctx context.Context, o *lockOptions, n int, newDriver func(ctx context.Context, i int) (lockDriver, error), res *lockResult) error {
	drivers := make([]lockDriver, n)
	for i := range drivers {
		d, err := newDriver(ctx, i)
		if err != nil {
			return fmt.Errorf("contender %d: %w", i, err)
		}
		drivers[i] = d
		defer d.close()
	}
	var (
		holding   atomic.Int32
		mu        sync.Mutex
		lastToken uint64
		waits     []time.Duration
		unlocks   []time.Duration
	)
	end := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	for _, d := range drivers {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				cctx, cancel := context.WithDeadline(ctx, end.Add(10*time.Second))
				start := time.Now()
				token, err := d.lock(cctx)
				got := time.Now()
				if err != nil {
					cancel()
					mu.Lock()
					res.Errors++
					mu.Unlock()
					continue
				}
				overlap := holding.Add(1) != 1
				mu.Lock()
				if overlap {
					res.Overlaps++
				}
				if token <= lastToken {
					res.Backwards++
				}
				lastToken = max(lastToken, token)
				if got.Before(end) {
					res.Acquires++
					waits = append(waits, got.Sub(start))
				}
				mu.Unlock()
				holding.Add(-1)
				err = d.unlock(cctx)
				cancel()
				mu.Lock()
				if err != nil {
					res.Errors++
				} else {
					unlocks = append(unlocks, time.Since(got))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.PerSecond = float64(res.Acquires) / o.duration.Seconds()
	slices.Sort(waits)
	slices.Sort(unlocks)
	if n := len(waits); n > 0 {
		res.WaitP50Ms, res.WaitP99Ms = ms(waits[n/2]), ms(waits[min(n-1, n*99/100)])
	}
	if n := len(unlocks); n > 0 {
		res.UnlockP50 = ms(unlocks[n/2])
	}
	return nil
}

// lockEtcd runs concurrency.Mutex: each contender a session (a lease of
// 10 s kept alive) on a client of member i mod 3; the token is the lock
// key's create revision (Mutex.Header's revision after Lock).
func (r *runner) lockEtcd(ctx context.Context, o *lockOptions) []*lockResult {
	fail := func(err error) []*lockResult { return []*lockResult{{System: "etcd", Failure: err.Error()}} }
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
	out := lockRun(ctx, o, r.progress, "etcd", func(ctx context.Context, i int) (lockDriver, error) {
		s, err := concurrency.NewSession(clis[i%len(clis)], concurrency.WithTTL(10))
		if err != nil {
			return lockDriver{}, err
		}
		m := concurrency.NewMutex(s, "bench/lock/")
		return lockDriver{
			lock: func(ctx context.Context) (uint64, error) {
				if err := m.Lock(ctx); err != nil {
					return 0, err
				}
				return uint64(m.Header().Revision), nil
			},
			unlock: m.Unlock,
			close:  func() { _ = s.Close() },
		}, nil
	})
	failed = slices.ContainsFunc(out, func(r *lockResult) bool { return r.Failure != "" })
	return out
}

// lockCaspaxos runs client.Session.Lock: each contender a session (a
// lease of 10 s kept alive) on a client whose first endpoint is node
// i mod 3; the token is the lock register's version after the acquire.
func (r *runner) lockCaspaxos(ctx context.Context, o *lockOptions) []*lockResult {
	fail := func(err error) []*lockResult { return []*lockResult{{System: "caspaxos", Failure: err.Error()}} }
	cl, err := r.startCaspaxos()
	if err != nil {
		return fail(err)
	}
	failed := true
	defer func() { cl.stop(o.keep || failed) }()
	var clis []*client.Client
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	for i := range cl.clients {
		c, err := client.New(client.Config{Endpoints: append(slices.Clone(cl.clients[i:]), cl.clients[:i]...)})
		if err != nil {
			return fail(err)
		}
		clis = append(clis, c)
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { _, err := clis[0].Put(ctx, "bench/ready", []byte("1")); return err }); err != nil {
		return fail(err)
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, cl.clients, nil) }); err != nil {
		return fail(err)
	}
	out := lockRun(ctx, o, r.progress, "caspaxos", func(ctx context.Context, i int) (lockDriver, error) {
		c := clis[i%len(clis)]
		s, err := c.NewSession(ctx, 10*time.Second)
		if err != nil {
			return lockDriver{}, err
		}
		var held atomic.Uint64 // the token of the hold to release
		return lockDriver{
			lock: func(ctx context.Context) (uint64, error) {
				t, err := s.Lock(ctx, "bench", client.LockOptions{})
				held.Store(t)
				return t, err
			},
			unlock: func(ctx context.Context) error {
				return c.ReleaseLock(ctx, "bench", s.Lease.ID, held.Load())
			},
			close: func() {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Close(cctx)
			},
		}, nil
	})
	failed = slices.ContainsFunc(out, func(r *lockResult) bool { return r.Failure != "" })
	return out
}

func printLockTable(w io.Writer, rep *lockReport) {
	fmt.Fprintf(w, "lock: contenders on one lock, each lock → check → unlock in a loop for %.0f s (load: %s)\n",
		rep.Duration, strings.Join(rep.Load, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tcontenders\tacquires\tacquires/s\twait p50 ms\twait p99 ms\tunlock p50 ms\toverlaps\ttokens backwards\terrors\t")
	for _, r := range rep.Runs {
		if r.Failure != "" {
			fmt.Fprintf(tw, "%s\t%d\tfailed: %s\t\t\t\t\t\t\t\t\n", r.System, r.Contenders, r.Failure)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n", r.System, r.Contenders, r.Acquires, r.PerSecond,
			r.WaitP50Ms, r.WaitP99Ms, r.UnlockP50, r.Overlaps, r.Backwards, r.Errors)
	}
	tw.Flush()
}
