package sim

import (
	"strings"
	"testing"
)

// TestSameSeedSameRun runs seeds twice: the event traces (hashed) must be
// identical, and different seeds must give different traces.
func TestSameSeedSameRun(t *testing.T) {
	t.Parallel()
	hashes := make(map[uint64]uint64)
	for _, seed := range []uint64{7, 8} {
		var runs [2]Report
		for i := range runs {
			rep, err := Run(Options{Seed: seed, Ops: 2000})
			if err != nil {
				t.Fatal(err)
			}
			runs[i] = rep
		}
		if runs[0].TraceHash != runs[1].TraceHash || runs[0].Stats != runs[1].Stats {
			t.Fatalf("seed %d ran twice differently: trace %016x vs %016x\n%s\nvs\n%s",
				seed, runs[0].TraceHash, runs[1].TraceHash, runs[0].Stats.String(), runs[1].Stats.String())
		}
		hashes[seed] = runs[0].TraceHash
	}
	if hashes[7] == hashes[8] {
		t.Fatalf("seeds 7 and 8 have the same trace hash %016x", hashes[7])
	}
}

// TestTraceNamesEveryEvent writes the trace of a run with every timer kind
// (gather among them): each event must print, none under a made-up name.
func TestTraceNamesEveryEvent(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed < 100; seed++ {
		opts := Options{Seed: seed, Ops: 500}
		if !opts.Plan().Gather {
			continue
		}
		var trace strings.Builder
		opts.Trace = &trace
		if _, err := Run(opts); err != nil {
			t.Fatal(err)
		}
		out := trace.String()
		for _, name := range []string{" attempt timer ", " gather timer "} {
			if !strings.Contains(out, name) {
				t.Errorf("seed %d: no %q in the trace", seed, name)
			}
		}
		if strings.Contains(out, "timer-kind-") {
			t.Errorf("seed %d: a timer without a name in the trace", seed)
		}
		return
	}
	t.Fatal("no seed below 100 turns gather on")
}
