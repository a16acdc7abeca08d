package kv

import "time"

// The round-trip bounds that routing shares between the client, the node
// and the peer transport. Each is defined here once; the parts that act on
// a distance read it from here.

// ForwardMaxRTT is the largest round-trip time to a key's home at which a
// node still forwards the key's requests there, and how much farther than
// the nearest endpoint a key's home may be for the Go client to send it the
// key's writes. Forwarding costs one round trip between the two nodes on
// top of the home's own round trip to a quorum: on a LAN (well under a
// millisecond) that is cheap, and it buys composition of concurrent changes
// and a warm one-round-trip cache; across regions (tens to hundreds of
// milliseconds) it would double a change's latency, so the receiving node
// proposes itself. See docs/routing.md.
const ForwardMaxRTT = 5 * time.Millisecond

// DefaultRequestTimeout bounds a client request that sets no deadline of
// its own: the networked node's client API, the embeddable store and the
// command line's client commands all default to it, and the Go client's
// and the command line's locks and elections give their cleanup (release
// or resign, then revoke) this long.
const DefaultRequestTimeout = 5 * time.Second

// FailedRTT is the round trip the peer transport reports for a node that
// failed and has not answered steadily since: its probe timeout, beyond
// which no probe counts as an answer. Routing counts such a node as far;
// the proposer's timeouts and the read fast path's proximity leave it out
// instead of waiting for it.
const FailedRTT = 2 * time.Second
