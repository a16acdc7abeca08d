package server

import (
	"math/rand/v2"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Backoff returns the delay before retry number retry (1 for the first):
// base doubled per earlier retry, capped at maxDelay, then jittered
// uniformly into its upper half so that callers that collided spread out.
// The proposer driver, the GC runner and the membership controller retry
// with it.
func Backoff(base, maxDelay time.Duration, retry int, rng *rand.Rand) time.Duration {
	d := base
	for i := 1; i < retry && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	half := d / 2
	return half + time.Duration(rng.Int64N(int64(d-half)+1))
}

// Home returns the home proposer of key among members: the member with the
// highest weight hash(key, member) (rendezvous hashing). Every node computes
// the same home from the same member list, whatever its order, and removing
// a member moves only the keys it was home of. It returns 0 if members is
// empty.
//
// Routing is only for performance: a key's changes keep arriving at the same
// proposer, whose one-round-trip cache then pays (PROTOCOL.md §5).
// Correctness never depends on it. The node routes by it; the GC runner's
// sweep takes the keys a node is home of.
func Home(key string, members []protocol.NodeID) protocol.NodeID {
	return protocol.Top(key, members)
}
