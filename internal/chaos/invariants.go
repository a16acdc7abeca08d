package chaos

import (
	"fmt"
	"slices"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
)

// invariants are the simulator's safety properties (internal/sim,
// invariants.go) that can be seen from outside the nodes, checked on the
// messages the network carries and on the disks left at the end:
//
//  1. One value per ballot: every accept that leaves a proposer for a
//     (key, ballot) carries the same state. Checked at every send.
//  2. A chosen value is never lost: once a majority of the acceptors a
//     proposer sent (key, ballot)'s accept to have acknowledged it (the
//     accept quorum of every configuration membership change uses, and
//     one that follows the configuration the proposer used, whichever
//     the nodes take meanwhile), the disks that survive the run (each node's, cloned as a
//     crash at the end would leave it) keep an accepted ballot >= it on
//     enough acceptors of the last configuration that every prepare quorum
//     of it meets one. Checked at the end, for keys deletion GC never
//     collected (a collection removes chosen tombstones on purpose).
//  3. What an acceptor showed survives its crash: every accepted ballot
//     any reply of it showed (the accept it acknowledged, the accepted
//     state a promise, read reply or conflict revealed, but a floor's
//     refusal: its Accepted is the floor, no accepted ballot) is on its
//     disk after a crash, unless deletion GC collected the key there.
//     Checked at every crash. And every promise it gave survives its crash,
//     though its write may not (PROTOCOL.md §12, the floor's job): after
//     a restart it never promises a ballot at or below one it promised
//     before, nor acknowledges an accept below one, unless deletion GC
//     collected the key there. Checked at every such reply of a restarted
//     node. (The simulator's invariant 3, seen from outside.)
type invariants struct {
	mu        sync.Mutex
	collected map[protocol.NodeID]map[string]bool // keys GC removed, per acceptor
	values    map[ballotKey]protocol.State
	acked     map[ballotKey][]protocol.NodeID // acceptors that acknowledged it
	sentTo    map[ballotKey][]protocol.NodeID // acceptors its accept was sent to
	violated  []string
}

type ballotKey struct {
	key    string
	ballot protocol.Ballot
}

func newInvariants() *invariants {
	return &invariants{
		values:    make(map[ballotKey]protocol.State),
		acked:     make(map[ballotKey][]protocol.NodeID),
		collected: make(map[protocol.NodeID]map[string]bool),
		sentTo:    make(map[ballotKey][]protocol.NodeID),
	}
}

// sent records a batch leaving a node.
func (v *invariants) sent(msgs []protocol.Message) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range msgs {
		bk := ballotKey{m.Key, m.Ballot}
		switch m.Kind {
		case protocol.MsgAccept:
			if old, ok := v.values[bk]; ok && !old.Equal(m.State) {
				v.violate("invariant 1: key %q ballot %s carried two states: %s and %s", m.Key, m.Ballot, old, m.State)
			}
			v.values[bk] = m.State
			if !slices.Contains(v.sentTo[bk], m.To) {
				v.sentTo[bk] = append(v.sentTo[bk], m.To)
			}
		case protocol.MsgAccepted:
			if !slices.Contains(v.acked[bk], m.From) {
				v.acked[bk] = append(v.acked[bk], m.From)
			}
		}
	}
}

// breach records a violation found outside the invariants' own checks.
func (v *invariants) breach(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.violate(format, args...)
}

func (v *invariants) violate(format string, args ...any) {
	if len(v.violated) < 20 {
		v.violated = append(v.violated, fmt.Sprintf(format, args...))
	}
}

// chosen returns, per key, the highest ballot a majority of the acceptors
// its accept was sent to acknowledged.
func (v *invariants) chosen() map[string]protocol.Ballot {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]protocol.Ballot)
	for bk, ids := range v.acked {
		n := 0
		for _, id := range ids {
			if slices.Contains(v.sentTo[bk], id) {
				n++
			}
		}
		if 2*n > len(v.sentTo[bk]) && out[bk.key].Less(bk.ballot) {
			out[bk.key] = bk.ballot
		}
	}
	return out
}

// checkSurvivors checks invariant 2 against the registers read from the
// surviving disks (per acceptor, per key) of the last configuration cfg,
// for the keys not in collected.
func (v *invariants) checkSurvivors(cfg protocol.Config, disks map[protocol.NodeID]map[string]protocol.Register, collected map[string]bool) {
	need := len(cfg.PrepareSet) - cfg.PrepareQuorum + 1
	for key, b := range v.chosen() {
		if collected[key] {
			continue
		}
		var keep []protocol.NodeID
		for _, id := range cfg.PrepareSet {
			if reg, ok := disks[id][key]; ok && !reg.Accepted.Less(b) {
				keep = append(keep, id)
			}
		}
		if len(keep) < need {
			v.mu.Lock()
			v.violate("invariant 2: key %q ballot %s was chosen, but only acceptors %v keep it (need %d of %v)", key, b, keep, need, cfg.PrepareSet)
			v.mu.Unlock()
		}
	}
}

// collect records that GC removed key's register on acceptor id.
func (v *invariants) collect(id protocol.NodeID, key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.collected[id] == nil {
		v.collected[id] = make(map[string]bool)
	}
	v.collected[id][key] = true
}

func (v *invariants) collectedAt(id protocol.NodeID, key string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.collected[id][key]
}

func (v *invariants) failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.violated)
}
