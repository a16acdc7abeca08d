package sim

import "testing"

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
