//go:build !race

package sim

// The default sweep: 200 seeds of 10,000 operations each.
const (
	sweepSeeds = 200
	sweepOps   = 10000
	// Each broken variant must be caught within this many seeds.
	variantSeeds = 40
	variantOps   = 4000
)
