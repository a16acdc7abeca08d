package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Plan is a run's fault plan, drawn from its seed before anything starts:
// the network's fault rates and the timed schedule of crashes, restarts,
// partitions and sync failures. The same seed gives the same Plan, whatever
// the goroutines do.
type Plan struct {
	Nodes   int // 3 or 5, IDs 1..Nodes
	Clients int
	Keys    int
	// Length is how long clients run and faults happen (wall time).
	Length time.Duration

	// Loss, Dup and Delay are each message's chances of being dropped,
	// sent twice, and held back for up to MaxDelay (which reorders it).
	Loss, Dup, Delay float64
	MaxDelay         time.Duration
	// Late is a delayed message's chance of being held lateDelay longer.
	Late float64
	// SyncLatency is how long each disk sync takes: the window in which
	// a crash loses writes already made.
	SyncLatency time.Duration
	// UnsyncedPercent is the share of unsynced data a crash keeps
	// (vfs.CrashCloneCfg.UnsyncedDataPercent).
	UnsyncedPercent int
	// Replay is the chance that each of the last requests sent to a node
	// before its crash reaches it again after its restart: a copy held in
	// the network across the whole crash, which the acceptor must refuse
	// if it promised more before (PROTOCOL.md §12, the floor).
	Replay float64

	// Events is the schedule, in time order.
	Events []Event
}

// EventKind is what a scheduled fault does.
type EventKind uint8

const (
	// Crash cuts a node off, clones its disk as a crash would leave it
	// (unsynced data lost), and stops it. The matching Restart follows.
	Crash EventKind = iota + 1
	// Restart reopens the store on the crashed disk and starts the node.
	Restart
	// Partition cuts the links listed in Event.Cut; Heal mends them all.
	Partition
	Heal
	// FailSync makes the node's next disk sync fail: its store stops, and
	// the harness restarts it as an operator would (a crash of its own).
	FailSync
)

var eventNames = [...]string{Crash: "crash", Restart: "restart", Partition: "partition", Heal: "heal", FailSync: "fail-sync"}

func (k EventKind) String() string { return eventNames[k] }

// Event is one scheduled fault.
type Event struct {
	At   time.Duration // from the start of the run
	Kind EventKind
	Node protocol.NodeID
	// Cut lists the one-way links a Partition cuts, as (from, to).
	Cut [][2]protocol.NodeID
}

func (e Event) String() string {
	s := fmt.Sprintf("%6.0fms %s", float64(e.At)/float64(time.Millisecond), e.Kind)
	if e.Node != 0 {
		s += fmt.Sprintf(" n%d", e.Node)
	}
	if len(e.Cut) > 0 {
		var cuts []string
		for _, c := range e.Cut {
			cuts = append(cuts, fmt.Sprintf("%d->%d", c[0], c[1]))
		}
		s += " " + strings.Join(cuts, ",")
	}
	return s
}

func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nodes=%d clients=%d keys=%d length=%v loss=%.2f dup=%.2f delay=%.2f max-delay=%v late=%.2f sync=%v unsynced-kept=%d%% replay=%.2f\n",
		p.Nodes, p.Clients, p.Keys, p.Length, p.Loss, p.Dup, p.Delay, p.MaxDelay, p.Late, p.SyncLatency, p.UnsyncedPercent, p.Replay)
	for _, e := range p.Events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// drawPlan draws the plan of seed. Faults come and go: each crash is
// followed by its restart, each partition by a heal, and at most a
// minority of the nodes is down at once, so that the run makes progress
// between faults.
func drawPlan(seed uint64, length time.Duration) Plan {
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	p := Plan{
		Nodes:           3,
		Clients:         4 + rng.IntN(4),
		Keys:            4 + rng.IntN(6),
		Length:          length,
		Loss:            rng.Float64() * 0.15,
		Dup:             rng.Float64() * 0.2,
		Delay:           rng.Float64() * 0.3,
		MaxDelay:        time.Duration(1+rng.IntN(30)) * time.Millisecond,
		Late:            rng.Float64() * 0.1,
		SyncLatency:     time.Duration(rng.IntN(3000)) * time.Microsecond,
		UnsyncedPercent: []int{0, 0, 30}[rng.IntN(3)],
	}
	if rng.IntN(3) == 0 {
		p.Nodes = 5
	}
	p.Events = append(p.Events, drawCrashes(rng, p)...)
	p.Events = append(p.Events, drawPartitions(rng, p)...)
	slices.SortStableFunc(p.Events, func(a, b Event) int { return int(a.At - b.At) })
	// Drawn last, so that it changes nothing else of a seed's plan.
	p.Replay = rng.Float64() * 0.5
	return p
}

// drawCrashes schedules crashes (some of them by a failed sync) and their
// restarts, one node down at a time.
func drawCrashes(rng *rand.Rand, p Plan) []Event {
	var evs []Event
	at := time.Duration(rng.Int64N(int64(p.Length / 4)))
	for at < p.Length*3/4 {
		id := protocol.NodeID(1 + rng.IntN(p.Nodes))
		down := time.Duration(20+rng.IntN(150)) * time.Millisecond
		kind := Crash
		if rng.IntN(3) == 0 {
			kind = FailSync // the node then stops itself, and is restarted
		}
		evs = append(evs, Event{At: at, Kind: kind, Node: id}, Event{At: at + down, Kind: Restart, Node: id})
		at += down + time.Duration(30+rng.IntN(200))*time.Millisecond
	}
	return evs
}

// drawPartitions schedules partitions that come and go: a node cut off
// both ways, a node that can send but not receive, or (with 5 nodes) two
// groups.
func drawPartitions(rng *rand.Rand, p Plan) []Event {
	var evs []Event
	at := time.Duration(rng.Int64N(int64(p.Length / 3)))
	for at < p.Length*3/4 {
		lasts := time.Duration(20+rng.IntN(200)) * time.Millisecond
		evs = append(evs, Event{At: at, Kind: Partition, Cut: drawCut(rng, p.Nodes)}, Event{At: at + lasts, Kind: Heal})
		at += lasts + time.Duration(50+rng.IntN(300))*time.Millisecond
	}
	return evs
}

func drawCut(rng *rand.Rand, nodes int) [][2]protocol.NodeID {
	var cut [][2]protocol.NodeID
	x := protocol.NodeID(1 + rng.IntN(nodes))
	mode := rng.IntN(3)
	for i := 1; i <= nodes; i++ {
		y := protocol.NodeID(i)
		if y == x {
			continue
		}
		switch {
		case mode == 0: // isolated
			cut = append(cut, [2]protocol.NodeID{x, y}, [2]protocol.NodeID{y, x})
		case mode == 1: // deaf: x sends, hears nothing
			cut = append(cut, [2]protocol.NodeID{y, x})
		case rng.IntN(2) == 0: // a random set of links, both ways
			cut = append(cut, [2]protocol.NodeID{x, y}, [2]protocol.NodeID{y, x})
		}
	}
	return cut
}
