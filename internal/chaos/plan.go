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
	Kind  PlanKind
	Nodes int // the first members: 3 or 5, IDs 1..Nodes
	// Grow is how many nodes membership changes add (IDs Nodes+1 on),
	// and remove again (Membership plans).
	Grow    int
	Clients int
	Keys    int
	// ColdKeys are keys besides Keys that clients pick only now and then
	// (Membership plans): keys left alone across a change, which only
	// its catch-up moves onto the new acceptors.
	ColdKeys int
	// Think is the most a client waits between two operations (a wait
	// drawn up to it): 0 in mixed plans, where clients keep every key
	// busy; a few milliseconds in GC plans, so that a deleted key lies
	// idle long enough to be collected.
	Think time.Duration
	// Length is how long clients run and faults happen (wall time).
	Length time.Duration

	// Loss, Dup and Delay are each message's chances of being dropped,
	// sent twice, and held back for up to MaxDelay (which reorders it).
	Loss, Dup, Delay float64
	MaxDelay         time.Duration
	// Late is a delayed message's chance of being held longer, by up to
	// LateDelay: long enough to outlive a GC round, as the age fence must
	// cope with.
	Late      float64
	LateDelay time.Duration
	// LateAcceptsOnly holds back only accepts (GC plans): the messages
	// that carry a value to an acceptor, the ones an age fence must stop,
	// while the rest of a GC round goes at the network's usual pace.
	LateAcceptsOnly bool
	// SyncLatency is how long each disk sync takes: the window in which
	// a crash loses writes already made.
	SyncLatency time.Duration
	// UnsyncedPercent is the share of unsynced data a crash keeps
	// (vfs.CrashCloneCfg.UnsyncedDataPercent).
	UnsyncedPercent int
	// Replay is the chance that each of the last requests sent to a node
	// before its crash reaches it again after its restart: a copy held in
	// the network across the whole crash, which the acceptor must refuse
	// if it promised more before (PROTOCOL.md §12, the floor). 0 in GCChurn
	// plans, whose shape (drawGCChurn) leaves out everything but the
	// fence's test.
	Replay float64

	// Events is the schedule, in time order.
	Events []Event
}

// PlanKind is the shape of a plan's workload and faults.
type PlanKind uint8

const (
	// Mixed: every fault, clients keeping a few keys busy (the default).
	Mixed PlanKind = iota + 1
	// GCChurn gives deletion GC its chance, as the simulator's plan for
	// gc-without-age-fence does: 3 nodes, few clients that pause between
	// operations, on few keys that cycle through delete, collection and
	// re-creation; many messages held back long enough to outlive a GC
	// round (an accept sent before the round, arriving after its
	// removals); no partitions, and at most one short crash, since a
	// round needs every node.
	GCChurn
	// Membership: a mixed plan whose cluster grows by one or two nodes
	// and shrinks back (3 -> 4 -> 3, 3 -> 5 -> 3) while clients run,
	// through membership.Controller on node 1, which is never crashed.
	Membership
)

var kindNames = [...]string{Mixed: "mixed", GCChurn: "gc-churn", Membership: "membership"}

func (k PlanKind) String() string { return kindNames[k] }

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
	// AddNode starts a joining node and has the controller add it;
	// RemoveNode has it remove a member, which the harness stops once
	// the change is over. A change waits for the one before to end.
	AddNode
	RemoveNode
)

var eventNames = [...]string{Crash: "crash", Restart: "restart", Partition: "partition", Heal: "heal", FailSync: "fail-sync",
	AddNode: "add-node", RemoveNode: "remove-node"}

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
	fmt.Fprintf(&b, "%s: nodes=%d grow=%d clients=%d keys=%d cold-keys=%d think=%v length=%v loss=%.2f dup=%.2f delay=%.2f max-delay=%v late=%.2f late-delay=%v late-accepts-only=%v sync=%v unsynced-kept=%d%% replay=%.2f\n",
		p.Kind, p.Nodes, p.Grow, p.Clients, p.Keys, p.ColdKeys, p.Think, p.Length, p.Loss, p.Dup, p.Delay, p.MaxDelay, p.Late, p.LateDelay, p.LateAcceptsOnly, p.SyncLatency, p.UnsyncedPercent, p.Replay)
	for _, e := range p.Events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// drawPlan draws the plan of seed: of kind if kind is not 0, else of the
// seed's kind (seeds 4k are GCChurn, 4k+2 Membership, the others Mixed,
// so that the default sweep of seeds 1-4 runs each). Faults come and go:
// each crash is followed by its restart, each partition by a heal, and at
// most a minority of the nodes is down at once, so that the run makes
// progress between faults.
func drawPlan(seed uint64, length time.Duration, kind PlanKind) Plan {
	rng := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	if kind == 0 {
		kind = []PlanKind{GCChurn, Mixed, Membership, Mixed}[seed%4]
	}
	if kind == GCChurn {
		return drawGCChurn(rng, length)
	}
	p := Plan{
		Kind:            Mixed,
		Nodes:           3,
		Clients:         4 + rng.IntN(4),
		Keys:            4 + rng.IntN(6),
		Length:          length,
		Loss:            rng.Float64() * 0.15,
		Dup:             rng.Float64() * 0.2,
		Delay:           rng.Float64() * 0.3,
		MaxDelay:        time.Duration(1+rng.IntN(30)) * time.Millisecond,
		Late:            rng.Float64() * 0.1,
		LateDelay:       150 * time.Millisecond,
		SyncLatency:     time.Duration(rng.IntN(3000)) * time.Microsecond,
		UnsyncedPercent: []int{0, 0, 30}[rng.IntN(3)],
	}
	if rng.IntN(3) == 0 {
		p.Nodes = 5
	}
	if kind == Membership {
		p.Kind, p.Nodes, p.Grow, p.ColdKeys = Membership, 3, 1+rng.IntN(2), 16
		// Lost accepts leave keys on a bare majority of the first nodes:
		// what a change's catch-up must then move.
		p.Loss = max(p.Loss, 0.08)
		p.Events = append(p.Events, drawChanges(rng, p)...)
	}
	p.Events = append(p.Events, drawCrashes(rng, p)...)
	p.Events = append(p.Events, drawPartitions(rng, p)...)
	slices.SortStableFunc(p.Events, func(a, b Event) int { return int(a.At - b.At) })
	// Drawn last, so that it changes nothing else of a seed's plan.
	p.Replay = rng.Float64() * 0.5
	return p
}

// drawGCChurn draws a GCChurn plan. What a missing age fence needs, all
// at once: a key deleted and left alone until every node collected it
// (few clients, pausing, on few keys; every node up), and an accept of
// that key sent before the round and delivered after it (late messages,
// held up to a few hundred milliseconds, against rounds of tens).
func drawGCChurn(rng *rand.Rand, length time.Duration) Plan {
	p := Plan{
		Kind:            GCChurn,
		Nodes:           3,
		Clients:         2 + rng.IntN(2),
		Keys:            4 + rng.IntN(4),
		Think:           time.Duration(5+rng.IntN(20)) * time.Millisecond,
		Length:          length,
		Loss:            rng.Float64() * 0.03,
		Dup:             rng.Float64() * 0.2,
		Delay:           0.3 + rng.Float64()*0.2,
		MaxDelay:        time.Duration(1+rng.IntN(10)) * time.Millisecond,
		Late:            0.3 + rng.Float64()*0.3,
		LateDelay:       time.Duration(150+rng.IntN(250)) * time.Millisecond,
		LateAcceptsOnly: true,
		SyncLatency:     time.Duration(rng.IntN(1000)) * time.Microsecond,
		UnsyncedPercent: []int{0, 30}[rng.IntN(2)],
	}
	if rng.IntN(2) == 0 {
		id := protocol.NodeID(1 + rng.IntN(p.Nodes))
		at := length/4 + time.Duration(rng.Int64N(int64(length/2)))
		kind := Crash
		if rng.IntN(2) == 0 {
			kind = FailSync
		}
		p.Events = append(p.Events, Event{At: at, Kind: kind, Node: id}, Event{At: at + time.Duration(20+rng.IntN(80))*time.Millisecond, Kind: Restart, Node: id})
	}
	return p
}

// drawCrashes schedules crashes (some of them by a failed sync) and their
// restarts, one node down at a time.
func drawCrashes(rng *rand.Rand, p Plan) []Event {
	var evs []Event
	at := time.Duration(rng.Int64N(int64(p.Length / 4)))
	for at < p.Length*3/4 {
		id := protocol.NodeID(1 + rng.IntN(p.Pool()))
		if p.Kind == Membership && id == 1 {
			id = protocol.NodeID(2 + rng.IntN(p.Pool()-1)) // node 1 runs the controller
		}
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
		evs = append(evs, Event{At: at, Kind: Partition, Cut: drawCut(rng, p.Pool())}, Event{At: at + lasts, Kind: Heal})
		at += lasts + time.Duration(50+rng.IntN(300))*time.Millisecond
	}
	return evs
}

// drawChanges schedules the membership changes of a Membership plan:
// Grow additions from a quarter of the run on (keys written before them,
// some on a bare majority, are what the catch-up must move), then as
// many removals of any node but 1 (the controller's), spread up to three
// quarters of the run (each waits for the one before).
func drawChanges(rng *rand.Rand, p Plan) []Event {
	var evs []Event
	at := p.Length/4 + time.Duration(rng.Int64N(int64(p.Length/8)))
	step := p.Length / 2 / time.Duration(2*p.Grow)
	for i := range p.Grow {
		evs = append(evs, Event{At: at, Kind: AddNode, Node: protocol.NodeID(p.Nodes + 1 + i)})
		at += step
	}
	left := make([]protocol.NodeID, 0, p.Pool()-1)
	for id := 2; id <= p.Pool(); id++ {
		left = append(left, protocol.NodeID(id))
	}
	for range p.Grow {
		i := rng.IntN(len(left))
		evs = append(evs, Event{At: at, Kind: RemoveNode, Node: left[i]})
		left = slices.Delete(left, i, i+1)
		at += step
	}
	return evs
}

// Pool is how many nodes may run: the first members and those added.
func (p Plan) Pool() int { return p.Nodes + p.Grow }

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

func kindByName(name string) (PlanKind, bool) {
	for k, n := range kindNames {
		if n == name && n != "" {
			return PlanKind(k), true
		}
	}
	return 0, false
}
