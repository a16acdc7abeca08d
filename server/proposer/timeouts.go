package proposer

import (
	"cmp"
	"slices"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// Timeouts that follow the network. The configured attempt and read
// timeouts suit a LAN; across regions the nearest quorum can be further
// away than they allow (a 100 ms read timeout against a 169 ms round trip
// makes every fast-path read time out and pay a second round trip). So when
// the driver knows the measured round trips (Config.Distances), a
// timeout is at least twice the round trip to the farthest member of the
// nearest quorum it waits for. Unmeasured peers count as near: then the
// configured timeouts apply.

// distanceRefresh is how often the quorum round trips are recomputed.
const distanceRefresh = 250 * time.Millisecond

type quorumDistances struct {
	at            time.Time
	read, attempt time.Duration // round trip to the q-th nearest acceptor
}

// stretch returns base, or twice the round trip to the quorum that timer
// waits for if that is longer. It runs on the driver's goroutine.
func (p *Proposer) stretch(base time.Duration, read bool, now time.Time) time.Duration {
	return max(base, 2*p.quorumRTT(read, now))
}

// quorumRTT returns the round trip to the nearest read quorum (read) or
// prepare/accept quorum, 0 if the driver measures none.
func (p *Proposer) quorumRTT(read bool, now time.Time) time.Duration {
	if p.cfg.Distances == nil {
		return 0
	}
	if now.Sub(p.dist.at) >= distanceRefresh {
		p.dist = p.measureQuorums(now)
	}
	if read {
		return p.dist.read
	}
	return p.dist.attempt
}

// retryDelay returns the backoff before retry number retry: BackoffBase,
// or the round trip to the nearest quorum if that is longer, doubled per
// earlier retry (protocol.Timer.Retry), capped, jittered. Across regions a
// retry after a couple of milliseconds lands while the rival's accept is
// still on its way, and its prepare makes the acceptors refuse it; waiting
// about a round trip lets that accept arrive first.
func (p *Proposer) retryDelay(retry int, now time.Time) time.Duration {
	base := max(p.cfg.BackoffBase, p.quorumRTT(false, now))
	return server.Backoff(base, max(p.cfg.BackoffMax, base), retry, p.rng)
}

func (p *Proposer) measureQuorums(now time.Time) quorumDistances {
	cfg := p.core.Config()
	q := nearestQuorums(cfg, p.cfg.ID, p.cfg.Distances)
	q.at = now
	p.core.SetProximity(proximityTiers(cfg.AcceptSet, p.cfg.ID, p.cfg.Distances))
	return q
}

// proximityTiers orders the acceptors other than self for the read fast
// path (protocol.Proposer.SetProximity): those within kv.ForwardMaxRTT, or not
// measured yet, share the first tier (reads spread over them by key); each
// farther one is a tier of its own, nearest first. A node that failed and
// is settling (kv.FailedRTT) is in no tier: reads ask it last, or, when too
// few others are in tiers, ask every acceptor at once.
func proximityTiers(set []protocol.NodeID, self protocol.NodeID, dist server.Distancer) [][]protocol.NodeID {
	type far struct {
		id  protocol.NodeID
		rtt time.Duration
	}
	var near []protocol.NodeID
	var fars []far
	for _, id := range set {
		if id == self {
			continue
		}
		rtt, ok := dist.RTT(id)
		switch {
		case ok && rtt >= kv.FailedRTT:
			continue
		case ok && rtt > kv.ForwardMaxRTT:
			fars = append(fars, far{id, rtt})
			continue
		}
		near = append(near, id)
	}
	slices.SortFunc(fars, func(a, b far) int { return cmp.Compare(a.rtt, b.rtt) })
	tiers := [][]protocol.NodeID{near}
	for _, f := range fars {
		tiers = append(tiers, []protocol.NodeID{f.id})
	}
	return tiers
}

// nearestQuorums returns the round trip from self to the farthest member of
// the nearest read quorum, and of the nearest prepare or accept quorum. A
// node that failed and is settling (kv.FailedRTT) counts as unmeasured: a
// timeout stretched to twice kv.FailedRTT would leave an attempt whose
// messages were lost as the partition healed waiting seconds for its timer.
func nearestQuorums(cfg protocol.Config, self protocol.NodeID, dist server.Distancer) quorumDistances {
	nth := func(set []protocol.NodeID, q int) time.Duration {
		rtts := make([]time.Duration, 0, len(set))
		for _, id := range set {
			var d time.Duration
			if id != self {
				if m, ok := dist.RTT(id); ok && m < kv.FailedRTT {
					d = m
				}
			}
			rtts = append(rtts, d)
		}
		slices.Sort(rtts)
		if q < 1 || q > len(rtts) {
			return 0
		}
		return rtts[q-1]
	}
	return quorumDistances{
		read:    nth(cfg.AcceptSet, cfg.ReadQuorum()),
		attempt: max(nth(cfg.PrepareSet, cfg.PrepareQuorum), nth(cfg.AcceptSet, cfg.AcceptQuorum)),
	}
}
