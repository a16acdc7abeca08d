//go:build race

package sim

// Under the race detector everything runs about ten times slower, so the
// sweep is smaller: 16 seeds of 4,000 operations. (The simulator has no
// goroutines; what the race detector watches here is the test's worker
// pool and Porcupine's.)
const (
	sweepSeeds   = 16
	sweepOps     = 4000
	variantSeeds = 40
	variantOps   = 2000
)
