//go:build !race

package sim

// The default sweep: 200 seeds of 8,800 client operations each (and the
// listings beside them: 8,800 rather than 10,000 keeps the sweep's time
// what it was before listers were added).
const (
	sweepSeeds = 200
	sweepOps   = 8800
	// Each broken variant must be caught within this many seeds.
	variantSeeds = 40
	variantOps   = 4000
)
