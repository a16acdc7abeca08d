package node

import (
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// near reports whether forwarding to home pays: its measured round-trip
// time is at most kv.ForwardMaxRTT, or nothing was measured yet (at start-up,
// forwarding is what keeps two proposers from competing for a key). A home
// that has just come back from a failure reports itself far until it
// answers steadily again (transport.Transport.RTT): it is still working
// off what piled up for it, and a forward would wait behind that.
func near(fwd server.Forwarder, home protocol.NodeID) bool {
	d, ok := fwd.(server.Distancer)
	if !ok {
		return true
	}
	rtt, measured := d.RTT(home)
	return !measured || rtt <= kv.ForwardMaxRTT
}
