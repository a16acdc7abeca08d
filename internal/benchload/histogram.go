package benchload

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in nanoseconds in the layout of an HDR
// histogram: below 2^subBits every value has its own bucket, above that each
// power of two is split into 2^(subBits-1) equal buckets, so a reported
// value is within 0.2% (1/512) of the recorded one. Values are clamped to maxValue.
// A Histogram is not safe for concurrent use; give each worker its own and
// Merge them.
type Histogram struct {
	counts   []uint64
	total    uint64
	min, max uint64
	sum      float64
}

const (
	subBits  = 10
	subHalf  = 1 << (subBits - 1)
	maxShift = 36 - subBits + 1
	maxValue = 1<<36 - 1 // about 68 s
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, (maxShift+1)*subHalf+subHalf), min: math.MaxUint64}
}

// bucket returns the index of v's bucket.
func bucket(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return shift*subHalf + int(v>>shift)
}

// highest returns the largest value that falls into bucket i.
func highest(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	shift := i/subHalf - 1
	sub := uint64(i - shift*subHalf)
	return (sub+1)<<shift - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	v = min(v, maxValue)
	h.counts[bucket(v)]++
	h.total++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded value (0 if empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the mean of the recorded values (0 if empty).
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the value at quantile q in [0, 1]: the highest value of
// the bucket holding the ceil(q*count)-th smallest value, never more than
// the largest recorded value. 0 if empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(highest(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
