package benchload

import "math"

// Zipfian draws ranks in [0, n) with P(rank i) proportional to 1/(i+1)^theta,
// by the method of Gray et al., "Quickly generating billion-record synthetic
// databases" (SIGMOD 1994), as YCSB does; theta in (0, 1), YCSB uses 0.99.
// Rank 0 is the hottest. A Zipfian holds no randomness of its own: Next maps a
// uniform u in [0, 1) to a rank, so callers keep their seeded sources.
type Zipfian struct {
	n                   uint64
	theta, alpha, eta   float64
	zetan, halfPowTheta float64
}

// NewZipfian precomputes the constants for n ranks; it costs O(n).
func NewZipfian(n uint64, theta float64) *Zipfian {
	if n == 0 || theta <= 0 || theta >= 1 {
		panic("caspaxos/benchload: zipf needs n > 0 and 0 < theta < 1")
	}
	var zetan float64
	for i := uint64(1); i <= n; i++ {
		zetan += 1 / math.Pow(float64(i), theta)
	}
	zeta2 := 1 + math.Pow(0.5, theta)
	return &Zipfian{
		n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zetan, halfPowTheta: math.Pow(0.5, theta),
		eta: (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetan),
	}
}

// Next maps u in [0, 1) to a rank in [0, n).
func (z *Zipfian) Next(u float64) uint64 {
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < 1+z.halfPowTheta {
		return min(1, z.n-1)
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}
