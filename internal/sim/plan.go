package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Plan is the workload and fault mix of one run. It is drawn from the run's
// seed before anything else, so a seed names its plan; Options.Tweak may
// adjust it (the negative tests do).
type Plan struct {
	Nodes             int     // 3 or 5; every node is acceptor and proposer
	Clients           int     // each has at most one operation outstanding
	Keys              int     // the clients' operations spread over this many keys
	MaxInFlightPerKey int     // bounds concurrency per key (and Porcupine's work)
	HomeBias          float64 // chance that an operation goes to its key's home node
	Think             time.Duration
	Deadline          time.Duration // a client cancels its request after this

	Loss         float64       // chance that a message between nodes is lost
	Dup          float64       // chance that it is delivered twice
	Reorder      float64       // chance that it takes an extra long delay
	NetLatency   time.Duration // mean one-way latency between nodes
	ReorderDelay time.Duration // the extra delay's upper bound
	DiskLatency  time.Duration // mean sync latency

	// Each fault comes and goes: a gap drawn around Every, then the fault
	// for a time drawn around For. Every == 0 switches the fault off.
	PartitionEvery, PartitionFor time.Duration
	CrashEvery, DownFor          time.Duration
	SlowEvery, SlowFor           time.Duration
	SlowFactor                   int // a slow node's disk and network are this much slower
	// DiskLoss is the chance that a crash loses the node's whole disk. The
	// node then never comes back under its identity (the server refuses a
	// data directory the cluster does not know, server/identity):
	// it stays down until a membership change removes it and adds it back
	// as a new, empty acceptor. Variant.AmnesiaRestart brings it back
	// empty under its old identity instead.
	DiskLoss float64

	// GCEvery is the mean gap between deletion GC runs (0: no GC).
	GCEvery time.Duration
	// MemberEvery is the mean gap between membership changes (0: none).
	// With changes, the run has a pool of 5 nodes, of which the first
	// Nodes start as acceptors.
	MemberEvery time.Duration

	AttemptTimeout time.Duration // protocol.TimerAttempt
	ReadTimeout    time.Duration // protocol.TimerRead
	BackoffBase    time.Duration // protocol.TimerBackoff: jittered base<<retry ...
	BackoffMax     time.Duration // ... up to this
	CeilingStep    uint64
	MaxBatch       int
	MaxCachedKeys  int
	// MaxCachedBytes is drawn small at times (a few entries, or none), so
	// that the cache's byte bound evicts under the simulator too.
	MaxCachedBytes int64
	// Gather turns on protocol.ProposerConfig.Gather; GatherDelay is
	// TimerGather's delay (jittered).
	Gather      bool
	GatherDelay time.Duration

	// Exactly-once writes (idempotent.go), drawn from a stream of their
	// own: the share of writes with a request ID (0: none), the
	// idempotency window, the bound on clock skew (each clock is off by
	// up to half of it), and the seed of the clocks and IDs.
	Idempotent float64
	IDWindow   time.Duration
	MaxSkew    time.Duration
	ClockSeed  uint64
	// Leases (lease.go), drawn from a stream of their own: how many (0:
	// none) and their TTL.
	Leases   int
	LeaseTTL time.Duration
	// Locks: the lease holders also take a lock (lock.go).
	Locks bool
	// Listers list keys (list.go) beside the clients, each one page at a
	// time, a listing about every ListEvery (0: no listing); a round asks
	// each acceptor for at most ListBatch keys.
	Listers   int
	ListEvery time.Duration
	ListBatch int
	// Watchers watch keys and prefixes on the nodes (watch.go); 0: none.
	// WatchResync is their hubs' resync timer.
	Watchers    int
	WatchResync time.Duration
}

func pick[T any](rng *rand.Rand, options ...T) T { return options[rng.IntN(len(options))] }

// between returns a duration drawn uniformly from [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// drawPlan draws a plan; nodes is 3 or 5, or 0 to draw that too.
func drawPlan(rng *rand.Rand, nodes int) Plan {
	if nodes == 0 {
		nodes = pick(rng, 3, 5)
	}
	p := Plan{
		Nodes:             nodes,
		Clients:           4 + rng.IntN(21),
		Keys:              4 + rng.IntN(9),
		MaxInFlightPerKey: 2 + rng.IntN(3),
		HomeBias:          0.3 + 0.6*rng.Float64(),
		Think:             between(rng, 200*time.Microsecond, 2*time.Millisecond),
		Loss:              0.30 * rng.Float64(),
		Dup:               0.50 * rng.Float64(),
		Reorder:           0.20 * rng.Float64(),
		NetLatency:        between(rng, 100*time.Microsecond, time.Millisecond),
		DiskLatency:       between(rng, 100*time.Microsecond, 2*time.Millisecond),
		CeilingStep:       pick[uint64](rng, 2, 16, 256, 1<<16),
		MaxBatch:          pick(rng, 2, 8, 256),
		MaxCachedKeys:     pick(rng, 2, 1<<17),
	}
	p.MaxCachedBytes = pick[int64](rng, 1, 3*protocol.CacheEntryOverheadBytes, protocol.DefaultMaxCachedBytes)
	p.ReorderDelay = p.NetLatency * time.Duration(5+rng.IntN(16))
	// Each fault lasts no longer than the gap before the next one, so
	// that it comes and goes rather than being there nearly all the time
	// (which leaves histories of little but unknown outcomes).
	if rng.Float64() < 0.8 {
		p.PartitionEvery = between(rng, 50*time.Millisecond, 500*time.Millisecond)
		p.PartitionFor = between(rng, 20*time.Millisecond, min(300*time.Millisecond, p.PartitionEvery))
	}
	if rng.Float64() < 0.8 {
		p.CrashEvery = between(rng, 50*time.Millisecond, 500*time.Millisecond)
		p.DownFor = between(rng, 10*time.Millisecond, min(200*time.Millisecond, p.CrashEvery))
	}
	if rng.Float64() < 0.6 {
		p.SlowEvery = between(rng, 50*time.Millisecond, 500*time.Millisecond)
		p.SlowFor = between(rng, 20*time.Millisecond, min(300*time.Millisecond, p.SlowEvery))
		p.SlowFactor = 5 + rng.IntN(46)
	}
	// Disk loss in about a third of the plans with crashes, drawn from the
	// crash timings already drawn rather than from rng, so that the plans
	// and runs of the seeds without it stay what they were.
	if p.CrashEvery > 0 && p.CrashEvery%3 == 0 {
		p.DiskLoss = 0.05 + 0.25*float64(p.DownFor%16)/15
	}
	roundTrip := 2*p.NetLatency + p.DiskLatency
	p.AttemptTimeout = roundTrip * time.Duration(3+rng.IntN(6))
	p.ReadTimeout = roundTrip * time.Duration(2+rng.IntN(4))
	p.BackoffBase = roundTrip * time.Duration(1+rng.IntN(3))
	p.BackoffMax = 30 * p.BackoffBase
	p.Deadline = between(rng, 100*time.Millisecond, 500*time.Millisecond)
	if rng.Float64() < 0.7 {
		p.GCEvery = between(rng, 5*time.Millisecond, 100*time.Millisecond)
	}
	if rng.Float64() < 0.5 {
		p.MemberEvery = between(rng, 20*time.Millisecond, 300*time.Millisecond)
	}
	if rng.Float64() < 0.5 {
		p.Gather = true
		p.GatherDelay = between(rng, 50*time.Microsecond, 2*p.Think)
	}
	return p
}

// drawListing draws the plan's listers from a generator of their own
// (seeded from the run's seed), so that the rest of the plan, and a run
// whose tweak turns listing off, stay what they were before listers were
// added.
func drawListing(p *Plan, seed uint64) {
	rng := rand.New(rand.NewPCG(seed^0x6c697374696e6773, seed))
	if rng.Float64() < 0.9 {
		p.Listers = 1 + rng.IntN(2)
		p.ListEvery = between(rng, 5*time.Millisecond, 50*time.Millisecond)
		p.ListBatch = 1 + rng.IntN(3)
	}
}

func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nodes=%d clients=%d keys=%d in-flight/key<=%d home-bias=%.2f think=%v deadline=%v\n",
		p.Nodes, p.Clients, p.Keys, p.MaxInFlightPerKey, p.HomeBias, p.Think, p.Deadline)
	fmt.Fprintf(&b, "network: loss=%.1f%% dup=%.1f%% latency=%v reorder=%.1f%% (up to +%v)\n",
		100*p.Loss, 100*p.Dup, p.NetLatency, 100*p.Reorder, p.ReorderDelay)
	fmt.Fprintf(&b, "disk: sync latency=%v\n", p.DiskLatency)
	fmt.Fprintf(&b, "partitions: %s\n", onOff(p.PartitionEvery, p.PartitionFor))
	fmt.Fprintf(&b, "crashes: %s", onOff(p.CrashEvery, p.DownFor))
	if p.DiskLoss > 0 {
		fmt.Fprintf(&b, ", %.0f%% of them losing the whole disk", 100*p.DiskLoss)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "slow nodes: %s", onOff(p.SlowEvery, p.SlowFor))
	if p.SlowEvery > 0 {
		fmt.Fprintf(&b, " (x%d)", p.SlowFactor)
	}
	if p.GCEvery > 0 {
		fmt.Fprintf(&b, "\ndeletion GC: every ~%v", p.GCEvery)
	} else {
		b.WriteString("\ndeletion GC: off")
	}
	if p.Idempotent > 0 {
		fmt.Fprintf(&b, "\nexactly-once: %.0f%% of puts, increments and deletes with a request ID, window=%v, clock skew<=%v",
			100*p.Idempotent, p.IDWindow, p.MaxSkew)
	}
	if p.Leases > 0 {
		fmt.Fprintf(&b, "\nleases: %d, ttl=%v, clock skew<=%v", p.Leases, p.LeaseTTL, p.MaxSkew)
		if p.Locks {
			b.WriteString(", the holders take a lock")
		}
	}
	if p.MemberEvery > 0 {
		fmt.Fprintf(&b, "\nmembership: a pool of 5 nodes, a change every ~%v", p.MemberEvery)
	} else {
		b.WriteString("\nmembership: fixed")
	}
	fmt.Fprintf(&b, "\nproposer: attempt-timeout=%v read-timeout=%v backoff=%v..%v ceiling-step=%d max-batch=%d max-cached-keys=%d max-cached-bytes=%d",
		p.AttemptTimeout, p.ReadTimeout, p.BackoffBase, p.BackoffMax, p.CeilingStep, p.MaxBatch, p.MaxCachedKeys, p.MaxCachedBytes)
	if p.Gather {
		fmt.Fprintf(&b, " gather=%v", p.GatherDelay)
	}
	if p.ListEvery > 0 {
		fmt.Fprintf(&b, "\nlisting: %d listers, a listing every ~%v, %d keys per acceptor per round", p.Listers, p.ListEvery, p.ListBatch)
	} else {
		b.WriteString("\nlisting: off")
	}
	if p.Watchers > 0 { // (nothing when off: a plan without watchers reads, and hashes, as before)
		fmt.Fprintf(&b, "\nwatching: %d watchers, resync every ~%v", p.Watchers, p.WatchResync)
	}
	return b.String()
}

func onOff(every, length time.Duration) string {
	if every == 0 {
		return "off"
	}
	return fmt.Sprintf("every ~%v for ~%v", every, length)
}
