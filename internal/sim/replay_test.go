package sim

import (
	"bufio"
	"os"
	"testing"
)

// TestReplay reruns one seed, verbosely:
//
//	go test ./internal/sim -run TestReplay -seed 1234 -v
//
// with -variant to switch on a broken variant, -events FILE to write every event
// to a file, -ops to change the run's length.
func TestReplay(t *testing.T) {
	seed := flagUint(t, "seed")
	if seed == 0 {
		t.Skip("no -seed given")
	}
	opts := Options{Seed: seed, Ops: flagInt(t, "ops"), NoRetire: flagBool("no-retire"), CheckTimeout: flagDuration(t, "check-timeout")}
	if name := flagString("variant"); name != "" {
		v, ok := variantByName(name)
		if !ok {
			t.Fatalf("unknown variant %q", name)
		}
		opts.Variant, opts.Tweak = v.variant, v.tweak
	}
	if path := flagString("events"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		defer func() {
			if err := w.Flush(); err != nil {
				t.Error(err)
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
		}()
		opts.Trace = w
	}
	t.Logf("seed %d plan:\n%s", seed, opts.Plan())
	rep, err := Run(opts)
	t.Logf("trace hash %016x\n%s", rep.TraceHash, rep.Stats.String())
	if err != nil {
		t.Fatal(err)
	}
}
