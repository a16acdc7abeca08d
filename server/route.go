package server

import (
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// ForwardMaxRTT is the largest round-trip time to a key's home at which a
// node still forwards the key's requests there. Forwarding costs one round
// trip between the two nodes on top of the home's own round trip to a
// quorum: on a LAN (well under a millisecond) that is cheap, and it buys
// composition of concurrent changes and a warm one-round-trip cache; across
// regions (tens to hundreds of milliseconds) it would double a change's
// latency, so the receiving node proposes itself. See docs/routing.md.
const ForwardMaxRTT = 5 * time.Millisecond

// Distancer is what a Forwarder may also report: the measured round-trip
// time to a node, false while none was measured. The network forwarder
// reports its transport's link probes; a Forwarder without it (the
// in-process one) counts every node as near. A node that failed (a probe
// got no answer, its link broke) and has not answered steadily since is
// reported FailedRTT away.
type Distancer interface {
	RTT(id protocol.NodeID) (time.Duration, bool)
}

// FailedRTT is the round trip a Distancer reports for a node that failed
// and has not answered steadily since (the transport's probe timeout; no
// probe that took longer counts as an answer). Routing counts such a node
// as far; the timeouts and the read fast path's proximity leave it out
// instead of waiting for it (timeouts.go).
const FailedRTT = 2 * time.Second

// near reports whether forwarding to home pays: its measured round-trip
// time is at most ForwardMaxRTT, or nothing was measured yet (at start-up,
// forwarding is what keeps two proposers from competing for a key). A home
// that has just come back from a failure reports itself far until it
// answers steadily again (transport.Transport.RTT): it is still working
// off what piled up for it, and a forward would wait behind that.
func near(fwd Forwarder, home protocol.NodeID) bool {
	d, ok := fwd.(Distancer)
	if !ok {
		return true
	}
	rtt, measured := d.RTT(home)
	return !measured || rtt <= ForwardMaxRTT
}

// Home returns the home proposer of key among members: the member with the
// highest weight hash(key, member) (rendezvous hashing). Every node computes
// the same home from the same member list, whatever its order, and removing
// a member moves only the keys it was home of. It returns 0 if members is
// empty.
//
// Routing is only for performance: a key's changes keep arriving at the same
// proposer, whose one-round-trip cache then pays (PROTOCOL.md §5).
// Correctness never depends on it.
func Home(key string, members []protocol.NodeID) protocol.NodeID {
	return protocol.Top(key, members)
}
