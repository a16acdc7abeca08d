package netlab

import (
	"slices"
	"time"
)

// Bucket is the width of a timeline bucket.
const Bucket = 100 * time.Millisecond

// Timeline returns the client's successes per Bucket from its start until
// length.
func (c *Client) Timeline(length time.Duration) []int {
	out := make([]int, int((length+Bucket-1)/Bucket))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.successes {
		if b := int(t / Bucket); b >= 0 && b < len(out) {
			out[b]++
		}
	}
	return out
}

// Counts returns the client's successes and failed attempts.
func (c *Client) Counts() (successes, errors int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.successes), c.errors
}

// Latency summarizes the client's successful read-modify-writes, in ms.
type Latency struct {
	N                    int
	MeanMs, P50Ms, P99Ms float64
}

// Latency returns the client's latency of successes completed in [from, to)
// since its start.
func (c *Client) Latency(from, to time.Duration) Latency {
	c.mu.Lock()
	var ds []time.Duration
	for i, t := range c.successes {
		if t >= from && t < to {
			ds = append(ds, c.latencies[i])
		}
	}
	c.mu.Unlock()
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	return Latency{N: len(ds), MeanMs: ms(sum) / float64(len(ds)), P50Ms: at(0.50), P99Ms: at(0.99)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Round is one isolation: node Isolated cut off at Cut, healed at Heal,
// observed until End (times since the clients' start).
type Round struct {
	Isolated       int
	Cut, Heal, End time.Duration
}

// ClientRound is one client's figures in a round.
type ClientRound struct {
	Client   string `json:"client"`
	Isolated bool   `json:"isolated"`
	// MaxGapMs is the longest time between two successes (or between the
	// last success before the cut and the first after it) in the round.
	MaxGapMs float64 `json:"max_gap_ms"`
	// RecoveryMs: from the heal to the client's first success after it.
	RecoveryMs float64 `json:"recovery_ms"`
	// FullRateMs: from the heal to the end of the first bucket in which the
	// client reached at least half its rate before the first cut.
	FullRateMs float64 `json:"full_rate_ms"`
}

// RoundResult is what a round shows.
type RoundResult struct {
	Isolated int `json:"isolated"`
	// CompleteUnavailabilityMs is the longest run of buckets, from the cut
	// to the end of the round, in which no client succeeded.
	CompleteUnavailabilityMs float64 `json:"complete_unavailability_ms"`
	// MaxGapConnectedMs is the longest gap of a client of a node that
	// stayed connected; RecoveryMs and FullRateMs the largest of the
	// isolated node's clients.
	MaxGapConnectedMs float64       `json:"max_gap_connected_ms"`
	RecoveryMs        float64       `json:"recovery_ms"`
	FullRateMs        float64       `json:"full_rate_ms"`
	Clients           []ClientRound `json:"clients"`
}

// Analyze computes a round's figures; baseline is the time before the first
// cut whose rate counts as full (from warm to the first cut).
func Analyze(clients []*Client, r Round, warm time.Duration, firstCut time.Duration) RoundResult {
	res := RoundResult{Isolated: r.Isolated}
	total := make([]int, int((r.End+Bucket-1)/Bucket))
	for _, c := range clients {
		tl := c.Timeline(r.End)
		for i, n := range tl {
			total[i] += n
		}
		cr := ClientRound{Client: c.Name, Isolated: c.Node == r.Isolated}
		cr.MaxGapMs = c.maxGap(r.Cut, r.End)
		if cr.Isolated {
			cr.RecoveryMs, cr.FullRateMs = c.recovery(tl, r.Heal, warm, firstCut)
			res.RecoveryMs = max(res.RecoveryMs, cr.RecoveryMs)
			res.FullRateMs = max(res.FullRateMs, cr.FullRateMs)
		} else {
			res.MaxGapConnectedMs = max(res.MaxGapConnectedMs, cr.MaxGapMs)
		}
		res.Clients = append(res.Clients, cr)
	}
	run := 0
	for b := int(r.Cut / Bucket); b < len(total); b++ {
		if total[b] == 0 {
			run++
			res.CompleteUnavailabilityMs = max(res.CompleteUnavailabilityMs, ms(time.Duration(run)*Bucket))
		} else {
			run = 0
		}
	}
	return res
}

// maxGap is the longest time without a success in [from, to], counting from
// the last success before from.
func (c *Client) maxGap(from, to time.Duration) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := from
	for _, t := range c.successes {
		if t < from {
			prev = t
		}
	}
	var gap time.Duration
	for _, t := range c.successes {
		if t < from || t > to {
			continue
		}
		gap = max(gap, t-prev)
		prev = t
	}
	return ms(max(gap, to-prev))
}

func (c *Client) recovery(tl []int, heal, warm, firstCut time.Duration) (first, full float64) {
	c.mu.Lock()
	first = -1
	for _, t := range c.successes {
		if t >= heal {
			first = ms(t - heal)
			break
		}
	}
	c.mu.Unlock()
	var base float64
	if n := int((firstCut - warm) / Bucket); n > 0 {
		for _, x := range tl[int(warm/Bucket):int(firstCut/Bucket)] {
			base += float64(x)
		}
		base /= float64(n)
	}
	full = -1
	for b := int(heal / Bucket); b < len(tl); b++ {
		if float64(tl[b]) >= base/2 && tl[b] > 0 {
			full = ms(time.Duration(b+1)*Bucket - heal)
			break
		}
	}
	return first, full
}
