package sim

import "testing"

// TestWatchersSameSeedSameRun: a run with watchers is deterministic too
// (TestSameSeedSameRun's seeds draw none), and its watchers deliver, move
// and resync.
func TestWatchersSameSeedSameRun(t *testing.T) {
	t.Parallel()
	opts := Options{Seed: 6, Ops: 2000, Tweak: func(p *Plan) { p.Watchers = 2 }}
	if opts.Plan().WatchResync == 0 {
		t.Fatal("seed 6 was expected to draw watchers")
	}
	a, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.TraceHash != b.TraceHash {
		t.Fatalf("a run with watchers ran twice differently: trace %016x vs %016x", a.TraceHash, b.TraceHash)
	}
	st := a.Stats
	if st.WatchEvents == 0 || st.WatchResyncs == 0 || st.WatchHints == 0 || st.WatchSettled != 1 {
		t.Errorf("the watchers did too little: %d deliveries, %d resync passes, %d hints, settled %d",
			st.WatchEvents, st.WatchResyncs, st.WatchHints, st.WatchSettled)
	}
}
