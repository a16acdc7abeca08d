package chaos

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

var (
	flagSeeds   = flag.Int("chaos-seeds", 0, "run this many seeds (the soak); 0: the default sweep")
	flagFrom    = flag.Uint64("chaos-from", 1, "the first seed of the sweep or soak")
	flagSeed    = flag.Uint64("chaos-seed", 0, "TestReplay: the seed to replay")
	flagVariant = flag.String("chaos-variant", "", "TestReplay: a broken variant to switch on")
	flagLength  = flag.Duration("chaos-length", DefaultLength, "how long each run's clients and faults last")
	flagKind    = flag.String("chaos-plan", "", "TestReplay: force the plan kind (mixed, gc-churn, membership)")
)

// defaultSeeds is how many seeds the package's test runs when -chaos-seeds
// is not given: what `make test` runs.
const defaultSeeds = 4

// TestChaos runs the sweep: the code that ships, under every fault, seed
// after seed. Every seed is logged with its stats; a failure prints its
// plan and the command that replays it.
func TestChaos(t *testing.T) {
	n := *flagSeeds
	if n == 0 {
		n = defaultSeeds
	}
	for seed := *flagFrom; seed < *flagFrom+uint64(n); seed++ {
		runSeed(t, seed, Variant{}, 0)
	}
}

// TestReplay reruns one seed: go test ./internal/chaos -run TestReplay -chaos-seed N -v
func TestReplay(t *testing.T) {
	if *flagSeed == 0 {
		t.Skip("no -chaos-seed given")
	}
	v := Variant{}
	if *flagVariant != "" {
		var ok bool
		if v, ok = variantByName(*flagVariant); !ok {
			t.Fatalf("no variant %q", *flagVariant)
		}
	}
	var kind PlanKind
	if *flagKind != "" {
		var ok bool
		if kind, ok = kindByName(*flagKind); !ok {
			t.Fatalf("no plan kind %q", *flagKind)
		}
	}
	runSeed(t, *flagSeed, v, kind)
}

func runSeed(t *testing.T, seed uint64, v Variant, kind PlanKind) {
	t.Helper()
	start := time.Now()
	rep, err := Run(Options{Seed: seed, Length: *flagLength, Variant: v, Kind: kind})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("seed %d (%s) passed in %v: %s", seed, rep.Plan.Kind, time.Since(start).Round(time.Millisecond), rep.Stats)
}

// variantSeeds is how many seeds a broken variant may take to be caught.
const variantSeeds = 6

// TestBrokenVariantsAreCaught runs each deliberately broken production
// component (Variants) seed after seed, and fails unless a run catches it
// within variantSeeds seeds; -v shows which seed caught each.
func TestBrokenVariantsAreCaught(t *testing.T) {
	for _, v := range Variants() {
		t.Run(v.Name, func(t *testing.T) {
			for seed := uint64(1); seed <= variantSeeds; seed++ {
				_, err := Run(Options{Seed: seed, Length: *flagLength, Variant: v})
				var f *Failure
				if errors.As(err, &f) {
					t.Logf("seed %d caught it: %s", seed, firstLine(f.Reasons[0]))
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			t.Fatalf("variant %s was not caught in %d seeds", v.Name, variantSeeds)
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
