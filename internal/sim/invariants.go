package sim

import (
	"math/bits"

	"github.com/caspaxos/caspaxos/protocol"
)

// invariants are the safety properties checked while the run goes, each
// at every event that could break it (so, in effect, after every step):
//
//  1. One value per ballot: every (key, ballot) that any acceptor ever
//     accepts, synced or not, carries one state only. Checked at every
//     accept an acceptor writes.
//  2. A chosen value is never lost: once (key, ballot) is accepted by an
//     accept quorum (a majority of the acceptors it was sent to, which is
//     what every configuration of ours takes) in synced storage,
//     every prepare quorum of every configuration a proposer holds meets an
//     acceptor keeping a synced accepted ballot >= it; and once an accept
//     quorum has acknowledged it, likewise in what survives (synced
//     storage, plus pending writes of nodes that are up). With a fixed
//     majority configuration: a majority keeps it. Only a crash can lose data, so this is checked at every crash,
//     at every new chosen ballot, and at the end.
//  3. A promise is never broken. Promises are written without a sync
//     before their reply (PROTOCOL.md §12), so a crash may take one back;
//     what must hold is that the acceptor still refuses what it promised
//     to refuse. So: an acceptor's synced promise never drops (checked at
//     every sync); every accepted ballot it told anyone about, in any reply
//     (a promise's included: it waits for the key's earlier writes), is in
//     its synced register after a crash (checked at every crash);
//     and when it restarts, every promise it revealed (any reply's) is
//     either still in its synced register or has a counter below its
//     floor, which refuses every ballot with a counter below it on every
//     key (checked at every restart).
//  4. No ballot counter above the synced ceiling leaves a node (the
//     proposer's duty; checked at every message sent, in release).
//  5. No promise leaves an acceptor at or above its synced acceptor ceiling
//     (§12; the acceptor's duty that makes 3 hold): every promise or
//     accepted reply, including the Next promised with an accept, has a
//     counter below it when it leaves.
//
// A node that lost its disk (Plan.DiskLoss) never answers again under its
// identity: invariant 2 counts it as keeping every ballot, since no quorum
// can include it; invariant 3 starts afresh on it once added back.
//
// Deletion GC removes registers on purpose: a removal forgets the key's
// promises on that acceptor (invariant 3 starts afresh there), and once GC
// removes a tombstone chosen under ballot G, invariant 2 no longer asks
// that G, or anything below it, survive.

type invariants struct {
	// configs lists every configuration issued in the run, first to last.
	configs []protocol.Config
	// sentTo: the acceptors an accept went to (bit i: node i). A ballot is
	// chosen (acknowledged) once a majority of them hold (acknowledged) it.
	sentTo        map[ballotKey]uint32
	values        map[ballotKey]protocol.State
	syncedBy      map[ballotKey]uint32       // bit i: node i holds it in synced storage
	ackedBy       map[ballotKey]uint32       // bit i: node i acknowledged it
	chosen        map[string]protocol.Ballot // highest ballot chosen (synced quorum)
	collected     map[string]protocol.Ballot // the tombstone's ballot of the key's latest GC
	acknowledged  map[string]protocol.Ballot // highest ballot acknowledged by a quorum
	syncedPromise []map[string]protocol.Ballot
	revealed      []map[string]protocol.Register
}

type ballotKey struct {
	key string
	b   protocol.Ballot
}

func newInvariants(nodes int, first protocol.Config) invariants {
	inv := invariants{
		configs:      []protocol.Config{first},
		sentTo:       make(map[ballotKey]uint32),
		values:       make(map[ballotKey]protocol.State),
		syncedBy:     make(map[ballotKey]uint32),
		ackedBy:      make(map[ballotKey]uint32),
		chosen:       make(map[string]protocol.Ballot),
		collected:    make(map[string]protocol.Ballot),
		acknowledged: make(map[string]protocol.Ballot),
	}
	for range nodes {
		inv.syncedPromise = append(inv.syncedPromise, make(map[string]protocol.Ballot))
		inv.revealed = append(inv.revealed, make(map[string]protocol.Register))
	}
	return inv
}

// onAccept: n's acceptor wrote next over prev for key (invariant 1).
func (inv *invariants) onAccept(s *sim, n *node, key string, prev, next protocol.Register) {
	if next.Accepted == prev.Accepted {
		return // a promise only
	}
	bk := ballotKey{key, next.Accepted}
	if st, ok := inv.values[bk]; ok && !st.Equal(next.State) {
		s.fail("invariant 1 (one value per ballot): node %d accepts %s under ballot %s on %q, which already carries %s",
			n.id, next.State, next.Accepted, key, st)
		return
	}
	inv.values[bk] = next.State
}

// onReply: a reply describing reg leaves n (invariants 2, 3 and 5).
func (inv *invariants) onReply(s *sim, n *node, pr pendingReply) {
	key := pr.msg.Key
	if pr.forgotten {
		return
	}
	switch pr.msg.Kind {
	case protocol.MsgPromise, protocol.MsgAccepted:
		if c := n.disk.syncedAccCeiling; pr.reg.Promise.Counter >= c {
			s.fail("invariant 5 (no promise above the acceptor's ceiling): node %d answers %v, promising %s, with its synced acceptor ceiling at %d",
				n.id, pr.msg, pr.reg.Promise, c)
			return
		}
	}
	rv := inv.revealed[n.idx][key]
	if rv.Promise.Less(pr.reg.Promise) {
		rv.Promise = pr.reg.Promise
	}
	// A promise's own write may trail it (§12), but the accepted state it
	// shows was synced before it left, as any other reply's.
	if rv.Accepted.Less(pr.reg.Accepted) {
		rv.Accepted = pr.reg.Accepted
	}
	inv.revealed[n.idx][key] = rv
	if pr.msg.Kind != protocol.MsgAccepted {
		return
	}
	bk := ballotKey{key, pr.msg.Ballot}
	inv.ackedBy[bk] |= 1 << n.idx
	if inv.acceptQuorum(bk, inv.ackedBy[bk]) && inv.acknowledged[key].Less(bk.b) {
		inv.acknowledged[key] = bk.b
	}
}

// onSync: writes became durable on n (invariants 2 and 3).
func (inv *invariants) onSync(s *sim, n *node, writes []write) {
	for _, w := range writes {
		if !w.isRegister() {
			continue
		}
		if w.remove {
			delete(inv.syncedPromise[n.idx], w.key)
			continue
		}
		if w.reg.Promise.Less(inv.syncedPromise[n.idx][w.key]) {
			s.fail("invariant 3 (a promise is never broken): node %d syncs promise %s on %q after %s",
				n.id, w.reg.Promise, w.key, inv.syncedPromise[n.idx][w.key])
			return
		}
		inv.syncedPromise[n.idx][w.key] = w.reg.Promise
		if w.reg.Accepted.IsZero() {
			continue
		}
		bk := ballotKey{w.key, w.reg.Accepted}
		inv.syncedBy[bk] |= 1 << n.idx
		if inv.acceptQuorum(bk, inv.syncedBy[bk]) && inv.chosen[w.key].Less(bk.b) {
			inv.chosen[w.key] = bk.b
			s.stats.Chosen++
			s.ret.onChosen(s, w.key, bk.b)
			inv.checkChosen(s, w.key)
			s.checkRequests(w.key, w.reg.State)
			s.checkLease(w.key, w.reg.State)
		}
	}
}

// onCrash: n lost what it had not synced (invariants 2 and 3).
func (inv *invariants) onCrash(s *sim, n *node) {
	for _, key := range s.keys {
		reg, rv := n.disk.synced[key], inv.revealed[n.idx][key]
		if reg.Accepted.Less(rv.Accepted) {
			s.fail("invariant 3 (a promise is never broken): node %d restarts with %v on %q, but had answered with accepted %s",
				n.id, reg, key, rv.Accepted)
			return
		}
		inv.checkChosen(s, key)
	}
}

// onRestart: n's acceptor starts with its floor (invariant 3): every
// promise it revealed is kept by its synced register or lies below the
// floor.
func (inv *invariants) onRestart(s *sim, n *node) {
	for _, key := range s.keys {
		reg, rv := n.disk.synced[key], inv.revealed[n.idx][key]
		if reg.Promise.Less(rv.Promise) && rv.Promise.Counter >= n.disk.floor {
			s.fail("invariant 3 (a promise is never broken): node %d restarts with %v on %q and floor %d, but had promised %s",
				n.id, reg, key, n.disk.floor, rv.Promise)
			return
		}
	}
}

// acceptQuorum reports whether the nodes of set (bit i: node i) hold an
// accept quorum for bk: a majority of the acceptors its accept went to (our
// configurations' accept quorums are majorities of their accept sets).
func (inv *invariants) acceptQuorum(bk ballotKey, set uint32) bool {
	to := inv.sentTo[bk]
	return to != 0 && bits.OnesCount32(set&to) >= bits.OnesCount32(to)/2+1
}

// onSend: an accept for bk leaves for acceptor to.
func (inv *invariants) onSend(bk ballotKey, to protocol.NodeID) { inv.sentTo[bk] |= 1 << (to - 1) }

// checkChosen checks invariant 2 for key: the chosen ballot must be seen by
// every prepare quorum of every configuration a proposer holds (or will
// hold when it restarts), that is, held by at least |prepare set| -
// prepare quorum + 1 of its prepare set.
func (inv *invariants) checkChosen(s *sim, key string) {
	chosen, acked := inv.chosen[key], inv.acknowledged[key]
	// Deletion GC removes a tombstone chosen under its ballot (and
	// anything older): what it removed is no longer required to survive.
	if gc := inv.collected[key]; !gc.IsZero() {
		if !gc.Less(chosen) {
			chosen = protocol.Ballot{}
		}
		if !gc.Less(acked) {
			acked = protocol.Ballot{}
		}
	}
	if chosen.IsZero() && acked.IsZero() {
		return
	}
	seen := make(map[uint64]bool)
	for _, n := range s.nodes {
		if n.lost || n.fresh {
			continue // never restarts with its configuration: added, it gets the current one
		}
		c := s.configOf(n)
		if seen[c.Version] {
			continue
		}
		seen[c.Version] = true
		need := len(c.PrepareSet) - c.PrepareQuorum + 1
		var synced, kept int
		for _, id := range c.PrepareSet {
			if s.nodes[id-1].lost {
				// It never answers again under this identity, so no
				// prepare quorum can count it.
				synced++
				kept++
				continue
			}
			d := s.nodes[id-1].disk
			if !d.synced[key].Accepted.Less(chosen) {
				synced++
			}
			if !d.get(key).Accepted.Less(acked) {
				kept++
			}
		}
		switch {
		case !chosen.IsZero() && synced < need:
			s.fail("invariant 2 (a chosen value is never lost): ballot %s was chosen on %q, but only %d acceptors of configuration %d's prepare set %v keep a synced accepted ballot at or above it (%d needed to meet every prepare quorum of %d)",
				chosen, key, synced, c.Version, c.PrepareSet, need, c.PrepareQuorum)
			return
		case !acked.IsZero() && kept < need:
			s.fail("invariant 2 (a chosen value is never lost): ballot %s was acknowledged by a quorum on %q, but only %d acceptors of configuration %d's prepare set %v keep an accepted ballot at or above it (%d needed)",
				acked, key, kept, c.Version, c.PrepareSet, need)
			return
		}
	}
}

// final checks invariant 2 on every key at the end of the run.
func (inv *invariants) final(s *sim) {
	for _, key := range s.keys {
		inv.checkChosen(s, key)
	}
}
