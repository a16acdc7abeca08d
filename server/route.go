package server

import "github.com/caspaxos/caspaxos/protocol"

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
	h := hashKey(key)
	var best protocol.NodeID
	var bestW uint64
	for _, id := range members {
		w := mix(h ^ mix(uint64(id)))
		if best == 0 || w > bestW || (w == bestW && id > best) {
			best, bestW = id, w
		}
	}
	return best
}

// hashKey is 64-bit FNV-1a: stable across processes and versions, which
// routing between nodes needs (hash/maphash is seeded per process).
func hashKey(key string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime
	}
	return h
}

// mix is the SplitMix64 finalizer: it spreads every input bit over the
// output, so that weights of neighbouring IDs are independent.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
