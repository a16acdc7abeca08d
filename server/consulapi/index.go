package consulapi

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/caspaxos/caspaxos/kv"
)

// A prefix's index (X-Consul-Index of a recurse or keys query).
//
// Consul answers a listing with the highest index of the keys under it
// and of their tombstones: a number from its global log. caspaxos has no
// global log. A prefix's index is instead a hash of what its listing
// holds: its (key, version) pairs in order, 63 bits of their SHA-256,
// never 0. Every node computes the same index for the same keys at the
// same versions, across restarts, so a client moving between nodes (a
// load balancer) waits on the same number, and a blocking query returns
// exactly when the listing it would answer differs from the one the
// client's index names (a key added, changed or gone).
//
// What it gives up is order: a new index is as likely to be lower than
// the last as higher. Consul's contract covers this: a client that sees
// an index lower than the one it holds resets to 0 (the `api` package's
// watch plans and consul-template do), and its next query returns at once
// with the current index; a change then costs that client one more round
// trip half of the time. A return is no promise of a change, in Consul
// as here. Two different listings with the same index (a 2^-63 chance per
// pair) would keep a blocking query waiting through a change, until its
// wait ends.

// prefixIndex is the index of a listing of items.
func prefixIndex(items []kv.ListItem) uint64 {
	h := sha256.New()
	var n [8]byte
	for _, it := range items {
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Key)))
		h.Write(n[:])
		h.Write([]byte(it.Key))
		binary.BigEndian.PutUint64(n[:], it.Version)
		h.Write(n[:])
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return max(1, binary.BigEndian.Uint64(d[:8])>>1)
}
