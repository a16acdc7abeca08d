// Package benchload is the load generator shared by `caspaxos bench` and the
// side-by-side suite in bench/ (its own module, which adds an etcd Driver):
// the workloads, a closed loop of clients with warm-up, HDR-style latency
// histograms, and the check of the hot-key counter.
//
// A run is bounded in time: every client stops at the end of warm-up plus
// Duration, and every operation carries a timeout.
package benchload

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Driver is one connection to the system under test. Its methods are called
// concurrently by the clients that share it.
type Driver interface {
	// Put stores value under key.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key linearizably; an absent key is an answer, not an error.
	Get(ctx context.Context, key string) error
	// Increment adds one to the decimal counter at key (absent is 0) and
	// returns how many attempts were refused by a conflict before the one
	// that succeeded (0 for an atomic increment).
	Increment(ctx context.Context, key string) (conflicts int, err error)
	// Counter reads the counter at key (absent is 0).
	Counter(ctx context.Context, key string) (int64, error)
}

// Workload names what the clients do.
type Workload string

// The workloads. Keys are chosen uniformly from Config.Keys keys except in
// Zipf, where rank i is chosen with probability proportional to
// 1/(i+1)^0.99 (YCSB's constant).
const (
	Put Workload = "put" // put values of Config.ValueBytes over preloaded keys
	// Create puts values to keys never written before, in this run or any
	// other (a run-unique prefix): every write is a cold one.
	Create Workload = "create"
	Get    Workload = "get"   // linearizable get of preloaded keys
	Incr   Workload = "incr"  // read-modify-write increment of one hot key
	Mixed  Workload = "mixed" // 50% get, 50% put
	Zipf   Workload = "zipf"  // 50% get, 50% put, zipfian keys (YCSB A)
)

// AllWorkloads lists every workload in report order.
func AllWorkloads() []Workload { return []Workload{Put, Create, Get, Incr, Mixed, Zipf} }

// ParseWorkloads parses a comma-separated list ("all" for every workload).
func ParseWorkloads(s string) ([]Workload, error) {
	if s == "all" {
		return AllWorkloads(), nil
	}
	var out []Workload
	for _, name := range splitList(s) {
		w := Workload(name)
		if !w.valid() {
			return nil, fmt.Errorf("caspaxos/benchload: unknown workload %q (want put, create, get, incr, mixed, zipf or all)", name)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, errors.New("caspaxos/benchload: no workload")
	}
	return out, nil
}

// ParseInts parses a comma-separated list of positive integers.
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("caspaxos/benchload: %q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("caspaxos/benchload: empty list")
	}
	return out, nil
}

func (w Workload) valid() bool {
	return slices.Contains(AllWorkloads(), w)
}

// preloaded reports whether the workload starts with every key written
// once, unmeasured, as YCSB loads before it runs: reads then find values,
// and puts overwrite existing keys as in a store's steady state (the first
// write of a key costs caspaxos a prepare round, later ones do not). Only
// incr, which touches one key, starts empty.
func (w Workload) preloaded() bool { return w != Incr && w != Create }

// Config is one cell: a workload at a number of clients.
type Config struct {
	Workload   Workload
	Clients    int           // concurrent closed-loop clients
	Duration   time.Duration // measured time, after Warmup
	Warmup     time.Duration // time run but not measured
	Keys       int           // distinct keys (default 10,000)
	ValueBytes int           // size of a put's value (default 256)
	KeyPrefix  string        // prepended to every key (default "bench/")
	OpTimeout  time.Duration // deadline of one operation (default 10s)
	Seed       uint64        // seeds the clients' key choice
	// OnMeasure, if set, is called when the measured window opens and again
	// when it closes (start true, then false): the caller samples CPU there.
	OnMeasure func(start bool)
	// Progress, if set, is called about every 200ms with the phase
	// ("preload", "warmup", "measure") and the time and operations so far.
	Progress func(phase string, elapsed, total time.Duration, ops int64)
}

func (c *Config) validate() error {
	if !c.Workload.valid() {
		return fmt.Errorf("caspaxos/benchload: unknown workload %q", c.Workload)
	}
	if c.Clients <= 0 || c.Duration <= 0 || c.Warmup < 0 {
		return errors.New("caspaxos/benchload: clients and duration must be positive, warm-up not negative")
	}
	if c.Keys <= 0 {
		c.Keys = 10000
	}
	if c.ValueBytes <= 0 {
		c.ValueBytes = 256
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/"
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 10 * time.Second
	}
	return nil
}

// Result is the outcome of one cell.
type Result struct {
	Workload  Workload `json:"workload"`
	Clients   int      `json:"clients"`
	Seconds   float64  `json:"seconds"` // measured window
	Ops       uint64   `json:"ops"`     // successful operations started in the window
	OpsPerSec float64  `json:"ops_per_sec"`
	Errors    uint64   `json:"errors"` // failed operations started in the window
	// WarmupErrors are the failed operations of the warm-up, not counted
	// above; FirstWarmupError is one of their messages.
	WarmupErrors     uint64 `json:"warmup_errors"`
	FirstWarmupError string `json:"first_warmup_error,omitempty"`
	Conflicts        uint64 `json:"conflicts"` // refused increment attempts retried (etcd's Txn)
	// Latency of the successful operations, in milliseconds.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
	// FirstError is one error message of the window, if any.
	FirstError string `json:"first_error,omitempty"`
	// Counter is the hot-key check of the incr workload.
	Counter *CounterCheck `json:"counter,omitempty"`
	// Hist holds the latencies (not serialised).
	Hist *Histogram `json:"-"`
}

// CounterCheck compares what the hot-key counter gained during the run with
// the increments that succeeded (warm-up included). Failed increments may or
// may not have been applied, so the gain must lie in [Successes,
// Successes+Failed]. Initial is the counter before the run (an earlier run
// on the same cluster left it there); an increment of an earlier run whose
// outcome was unknown, and which took effect only after that read, would
// show as a failed check.
type CounterCheck struct {
	Successes uint64 `json:"successes"`
	Failed    uint64 `json:"failed"`
	Initial   int64  `json:"initial,omitempty"`
	Final     int64  `json:"final"`
	OK        bool   `json:"ok"`
}

// Gain is how much the counter rose during the run.
func (c *CounterCheck) Gain() int64 { return c.Final - c.Initial }

// Check fills in OK.
func (c *CounterCheck) Check() bool {
	g := c.Gain()
	c.OK = g >= 0 && uint64(g) >= c.Successes && uint64(g) <= c.Successes+c.Failed
	return c.OK
}

// worker is one client's tally.
type worker struct {
	hist             *Histogram
	ops, errs, confl uint64
	allOK, allFail   uint64 // increments over the whole run, for the check
	firstErr         error
	warmErrs         uint64
	firstWarmErr     error
}

// Run runs one cell against drivers (the clients share them round robin)
// and returns its result. It returns early only if ctx ends or, for incr,
// if the counter cannot be read before the run.
func Run(ctx context.Context, cfg Config, drivers []Driver) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(drivers) == 0 {
		return nil, errors.New("caspaxos/benchload: no drivers")
	}
	keys := makeKeys(cfg.KeyPrefix, cfg.Keys)
	hot := cfg.KeyPrefix + "hot-counter"
	progress := func(string, time.Duration, time.Duration, int64) {}
	if cfg.Progress != nil {
		progress = cfg.Progress
	}
	if cfg.Workload.preloaded() {
		if err := preload(ctx, cfg, drivers, keys, progress); err != nil {
			return nil, err
		}
	}
	var zipf *Zipfian
	if cfg.Workload == Zipf {
		zipf = NewZipfian(uint64(len(keys)), 0.99)
	}
	var initial int64
	if cfg.Workload == Incr {
		var err error
		if initial, err = readCounter(ctx, cfg, drivers[0], hot); err != nil {
			return nil, fmt.Errorf("caspaxos/benchload: reading the counter before the run: %w", err)
		}
	}
	// Create's keys: a prefix of this run's own, then the client and a
	// count, so that no key was written by an earlier run either.
	run := fmt.Sprintf("%screate/%x/", cfg.KeyPrefix, cryptoRand64())
	var live atomic.Int64
	start := time.Now()
	measureAt := start.Add(cfg.Warmup)
	end := measureAt.Add(cfg.Duration)
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{hist: NewHistogram()}
		workers[i] = w
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		value := make([]byte, cfg.ValueBytes)
		for j := range value {
			value[j] = byte('a' + rng.IntN(26))
		}
		d := drivers[i%len(drivers)]
		var n uint64
		fresh := func() string {
			n++
			return fmt.Sprintf("%s%d/%d", run, i, n)
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				measured := !t0.Before(measureAt)
				conflicts, err := step(ctx, cfg, d, rng, zipf, keys, hot, value, fresh)
				took := time.Since(t0)
				w.tally(cfg.Workload, measured, conflicts, took, err)
				if measured && err == nil {
					live.Add(1)
				}
				if err != nil {
					pause(ctx, 2*time.Millisecond) // do not spin on a dead cluster
				}
			}
		})
	}
	watch(ctx, cfg, start, measureAt, end, &live, progress, &wg)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := summarise(cfg, workers)
	if cfg.Workload == Incr {
		final, err := readCounter(ctx, cfg, drivers[0], hot)
		if err != nil {
			return res, fmt.Errorf("caspaxos/benchload: reading the counter: %w", err)
		}
		res.Counter.Initial, res.Counter.Final = initial, final
		res.Counter.Check()
	}
	return res, nil
}

// readCounter reads the hot-key counter, trying up to 5 times (a cluster
// under load may miss one read's deadline).
func readCounter(ctx context.Context, cfg Config, d Driver, hot string) (int64, error) {
	var err error
	for range 5 {
		cctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		var n int64
		n, err = d.Counter(cctx, hot)
		cancel()
		if err == nil || ctx.Err() != nil {
			return n, err
		}
		pause(ctx, 100*time.Millisecond)
	}
	return 0, err
}

// watch reports progress, calls OnMeasure at the window's edges, and returns
// when every worker has stopped.
func watch(ctx context.Context, cfg Config, start, measureAt, end time.Time, live *atomic.Int64,
	progress func(string, time.Duration, time.Duration, int64), wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	opened, closed := false, false
	edge := func(now time.Time) {
		if !opened && !now.Before(measureAt) {
			opened = true
			if cfg.OnMeasure != nil {
				cfg.OnMeasure(true)
			}
		}
		if opened && !closed && !now.Before(end) {
			closed = true
			if cfg.OnMeasure != nil {
				cfg.OnMeasure(false)
			}
		}
	}
	for {
		var timer <-chan time.Time
		now := time.Now()
		switch {
		case now.Before(measureAt):
			timer = time.After(measureAt.Sub(now))
		case now.Before(end):
			timer = time.After(end.Sub(now))
		}
		select {
		case <-done:
			edge(end) // the window closed even if the last op ran past it
			return
		case <-ctx.Done():
			<-done
			return
		case <-timer:
			edge(time.Now())
		case now := <-tick.C:
			edge(now)
			if now.Before(measureAt) {
				progress("warmup", now.Sub(start), measureAt.Sub(start), 0)
			} else {
				progress("measure", now.Sub(measureAt), end.Sub(measureAt), live.Load())
			}
		}
	}
}

func step(ctx context.Context, cfg Config, d Driver, rng *rand.Rand, zipf *Zipfian, keys []string, hot string, value []byte, fresh func() string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	switch cfg.Workload {
	case Put:
		return 0, d.Put(ctx, keys[rng.IntN(len(keys))], value)
	case Create:
		return 0, d.Put(ctx, fresh(), value)
	case Get:
		return 0, d.Get(ctx, keys[rng.IntN(len(keys))])
	case Incr:
		return d.Increment(ctx, hot)
	}
	var key string
	if zipf != nil {
		key = keys[zipf.Next(rng.Float64())]
	} else {
		key = keys[rng.IntN(len(keys))]
	}
	if rng.IntN(2) == 0 {
		return 0, d.Get(ctx, key)
	}
	return 0, d.Put(ctx, key, value)
}

func (w *worker) tally(wl Workload, measured bool, conflicts int, took time.Duration, err error) {
	if wl == Incr {
		if err == nil {
			w.allOK++
		} else {
			w.allFail++
		}
	}
	if !measured {
		if err != nil {
			w.warmErrs++
			w.firstWarmErr = cmpOr(w.firstWarmErr, err)
		}
		return
	}
	w.confl += uint64(conflicts)
	if err != nil {
		w.errs++
		if w.firstErr == nil {
			w.firstErr = err
		}
		return
	}
	w.ops++
	w.hist.Record(took)
}

func summarise(cfg Config, workers []*worker) *Result {
	h := NewHistogram()
	res := &Result{Workload: cfg.Workload, Clients: cfg.Clients, Seconds: cfg.Duration.Seconds(), Hist: h}
	var check CounterCheck
	for _, w := range workers {
		h.Merge(w.hist)
		res.Ops += w.ops
		res.Errors += w.errs
		res.Conflicts += w.confl
		check.Successes += w.allOK
		check.Failed += w.allFail
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
		res.WarmupErrors += w.warmErrs
		if res.FirstWarmupError == "" && w.firstWarmErr != nil {
			res.FirstWarmupError = w.firstWarmErr.Error()
		}
	}
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	res.P50, res.P90, res.P99, res.P999 = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999))
	res.Max, res.Mean = ms(h.Max()), ms(h.Mean())
	if cfg.Workload == Incr {
		res.Counter = &check
	}
	return res
}

// preload writes every key once, 64 at a time, so reads find values.
func preload(ctx context.Context, cfg Config, drivers []Driver, keys []string, progress func(string, time.Duration, time.Duration, int64)) error {
	value := make([]byte, cfg.ValueBytes)
	for i := range value {
		value[i] = 'p'
	}
	var next, done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 64 {
		d := drivers[i%len(drivers)]
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= int64(len(keys)) || ctx.Err() != nil {
					return
				}
				err := putRetrying(ctx, cfg.OpTimeout, d, keys[k], value)
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, fmt.Errorf("caspaxos/benchload: preload %s: %w", keys[k], err))
					mu.Unlock()
					next.Store(int64(len(keys)))
					return
				}
				if n := done.Add(1); n%500 == 0 {
					progress("preload", time.Since(start), 0, n)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// putRetrying puts until it succeeds or timeout passes: a preload must not
// fail a cell for a transient refusal (a peer briefly judged unreachable).
// Writing the same value twice is harmless.
func putRetrying(ctx context.Context, timeout time.Duration, d Driver, key string, value []byte) error {
	deadline := time.Now().Add(timeout)
	for {
		octx, cancel := context.WithDeadline(ctx, deadline)
		err := d.Put(octx, key, value)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		pause(ctx, 10*time.Millisecond)
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func makeKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%skey-%06d", prefix, i)
	}
	return keys
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// cryptoRand64 is a random number that no seed repeats: Create's keys must
// differ between runs against one cluster.
func cryptoRand64() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:])
}
