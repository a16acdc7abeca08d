package sim

import (
	"errors"
	"strings"
	"testing"
)

// TestBrokenVariantsAreCaught switches on each deliberately broken variant
// and runs seeds until the checker or an invariant catches it. The test
// fails if a variant survives variantSeeds seeds.
func TestBrokenVariantsAreCaught(t *testing.T) {
	for _, v := range brokenVariants() {
		t.Run(v.variant.Name, func(t *testing.T) {
			t.Parallel()
			ops := max(variantOps, v.minOps)
			for seed := uint64(1); seed <= variantSeeds; seed++ {
				_, err := Run(Options{Seed: seed, Ops: ops, Variant: v.variant, Tweak: v.tweak})
				var f *Failure
				if errors.As(err, &f) {
					reason, _, _ := strings.Cut(f.Reason, "\n")
					t.Logf("%s: caught by seed %d: %s\nreplay: %s", v.variant.Name, seed, reason, f.Replay())
					return
				}
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
			t.Errorf("variant %s survived %d seeds of %d operations: the checker cannot see it", v.variant.Name, variantSeeds, ops)
		})
	}
}

// TestShortReadQuorumCaughtWithoutRetirement: the read-quorum variant is
// caught with every unknown outcome left open to the end of time too, so
// catching it does not rest on the retirement rule (which can only make the
// check stricter).
func TestShortReadQuorumCaughtWithoutRetirement(t *testing.T) {
	t.Parallel()
	v, _ := variantByName("read-quorum-short")
	for seed := uint64(1); seed <= 10; seed++ {
		_, err := Run(Options{Seed: seed, Ops: 1000, Variant: v.variant, Tweak: v.tweak, NoRetire: true})
		var f *Failure
		if errors.As(err, &f) {
			reason, _, _ := strings.Cut(f.Reason, "\n")
			t.Logf("caught by seed %d: %s\nreplay: %s", seed, reason, f.Replay())
			return
		}
	}
	t.Errorf("a read quorum one short survived 10 seeds with unknown outcomes left open")
}
