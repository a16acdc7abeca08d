package benchload

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinTwoPermille(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := q * 100000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want*0.998 || got > want*1.002 {
			t.Errorf("quantile %v = %v, want %v ±0.2%%", q, time.Duration(got), time.Duration(want))
		}
	}
	if h.Max() != 100*time.Millisecond || h.Count() != 100000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
}

func TestHistogramBucketsAreMonotoneAndCoverTheirValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := rng.Uint64N(maxValue + 1)
		i := bucket(v)
		if highest(i) < v || (i > 0 && highest(i-1) >= v) {
			t.Fatalf("value %d in bucket %d whose range ends at %d (previous %d)", v, i, highest(i), highest(i-1))
		}
	}
	if bucket(maxValue) >= len(NewHistogram().counts) {
		t.Fatal("largest value outside the histogram")
	}
}

func TestHistogramMergeEqualsRecordingTogether(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 10000 {
		d := time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("quantile %v: merged %v, together %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if NewHistogram().Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func TestZipfianStaysInRangeAndFavoursLowRanks(t *testing.T) {
	z := NewZipfian(10000, 0.99)
	rng := rand.New(rand.NewPCG(5, 6))
	counts := make([]int, 10000)
	for range 200000 {
		r := z.Next(rng.Float64())
		if r >= 10000 {
			t.Fatalf("rank %d out of range", r)
		}
		counts[r]++
	}
	if z.Next(0) != 0 || z.Next(0.999999999) >= 10000 {
		t.Fatal("edges out of range")
	}
	if !(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[1000]) {
		t.Errorf("not skewed: %d %d %d %d", counts[0], counts[1], counts[10], counts[1000])
	}
	if small := NewZipfian(1, 0.5); small.Next(0.9) != 0 {
		t.Error("one rank must always be 0")
	}
}

func TestCounterCheck(t *testing.T) {
	for _, c := range []struct {
		ok, failed uint64
		final      int64
		want       bool
		initial    int64
	}{{10, 0, 10, true, 0}, {10, 2, 11, true, 0}, {10, 2, 12, true, 0}, {10, 0, 9, false, 0}, {10, 2, 13, false, 0},
		{10, 0, 25, true, 15}, {10, 0, 20, false, 15}, {10, 0, 10, false, 15}} {
		cc := CounterCheck{Successes: c.ok, Failed: c.failed, Final: c.final, Initial: c.initial}
		if cc.Check() != c.want {
			t.Errorf("%+v: got %v", c, !c.want)
		}
	}
}

// memDriver is an in-memory Driver; its increments conflict every third try.
type memDriver struct {
	mu    sync.Mutex
	data  map[string]string
	tries int
}

func (m *memDriver) Put(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[k] = string(v)
	return nil
}

func (m *memDriver) Get(_ context.Context, k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.data[k]
	return nil
}

func (m *memDriver) Increment(_ context.Context, k string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _ := strconv.ParseInt(m.data[k], 10, 64)
	m.data[k] = strconv.FormatInt(n+1, 10)
	m.tries++
	return m.tries % 3 / 2, nil
}

func (m *memDriver) Counter(_ context.Context, k string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _ := strconv.ParseInt(m.data[k], 10, 64)
	return n, nil
}

func TestRunEveryWorkloadAgainstMemory(t *testing.T) {
	for _, w := range AllWorkloads() {
		d := &memDriver{data: map[string]string{}}
		res, err := Run(context.Background(), Config{Workload: w, Clients: 4, Duration: 30 * time.Millisecond,
			Warmup: 10 * time.Millisecond, Keys: 100}, []Driver{d})
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if res.Ops == 0 || res.Errors != 0 || res.Hist.Count() != res.Ops {
			t.Errorf("%s: ops %d errors %d recorded %d", w, res.Ops, res.Errors, res.Hist.Count())
		}
		if w == Incr && (res.Counter == nil || !res.Counter.OK) {
			t.Errorf("incr: counter check %+v", res.Counter)
		}
		if w.preloaded() && len(d.data) < 100 {
			t.Errorf("%s: preloaded %d keys, want 100", w, len(d.data))
		}
	}
}

// TestCreateWritesEveryKeyOnce: every put of the create workload goes to a
// key no earlier put wrote, within a run and across two runs on one store.
func TestCreateWritesEveryKeyOnce(t *testing.T) {
	d := &countingDriver{memDriver: memDriver{data: map[string]string{}}, puts: map[string]int{}}
	total := uint64(0)
	for range 2 {
		res, err := Run(context.Background(), Config{Workload: Create, Clients: 4, Duration: 20 * time.Millisecond,
			Warmup: 5 * time.Millisecond}, []Driver{d})
		if err != nil {
			t.Fatal(err)
		}
		total += res.Ops
	}
	for k, n := range d.puts {
		if n != 1 {
			t.Fatalf("key %q written %d times", k, n)
		}
	}
	if uint64(len(d.puts)) < total {
		t.Fatalf("%d keys written for %d measured puts", len(d.puts), total)
	}
}

// countingDriver counts the puts of each key.
type countingDriver struct {
	memDriver
	mu   sync.Mutex
	puts map[string]int
}

func (c *countingDriver) Put(ctx context.Context, k string, v []byte) error {
	c.mu.Lock()
	c.puts[k]++
	c.mu.Unlock()
	return c.memDriver.Put(ctx, k, v)
}

// TestIncrTwiceOnOneCluster runs the incr workload twice against one store:
// the second run's check counts from where the first left the counter.
func TestIncrTwiceOnOneCluster(t *testing.T) {
	d := &memDriver{data: map[string]string{}}
	for run := range 2 {
		res, err := Run(context.Background(), Config{Workload: Incr, Clients: 2, Duration: 20 * time.Millisecond,
			Warmup: 5 * time.Millisecond}, []Driver{d})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Counter.OK || (run == 1) != (res.Counter.Initial > 0) {
			t.Errorf("run %d: counter check %+v", run, res.Counter)
		}
	}
}

func TestParseLists(t *testing.T) {
	if ws, err := ParseWorkloads("put, incr"); err != nil || len(ws) != 2 || ws[1] != Incr {
		t.Errorf("got %v %v", ws, err)
	}
	if _, err := ParseWorkloads("scan"); err == nil {
		t.Error("accepted an unknown workload")
	}
	if ns, err := ParseInts("1,16,64"); err != nil || len(ns) != 3 || ns[2] != 64 {
		t.Errorf("got %v %v", ns, err)
	}
	if _, err := ParseInts("0"); err == nil {
		t.Error("accepted 0")
	}
}
