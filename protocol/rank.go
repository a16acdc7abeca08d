package protocol

import "slices"

// Rank returns the members of set in rendezvous-hash order for key: by the
// weight hash(key, id), highest first (the higher ID first on a tie). Every
// node computes the same order from the same set, whatever the set's own
// order, and removing a member leaves the others' order as it was. The
// server's routing takes the first as the key's home proposer; the read fast
// path asks acceptors in this order (after itself and nearer ones), so that
// reads of different keys spread over the acceptors. The Go client sends
// each write to the first too (client/route.go).
func Rank(key string, set []NodeID) []NodeID {
	h := hashKey(key)
	out := slices.Clone(set)
	slices.SortFunc(out, func(a, b NodeID) int {
		if ranksBefore(h, a, b) {
			return -1
		}
		if ranksBefore(h, b, a) {
			return 1
		}
		return 0
	})
	return out
}

// Top returns the first of Rank(key, set) without building the order, or 0
// if set is empty.
func Top(key string, set []NodeID) NodeID {
	h := hashKey(key)
	var best NodeID
	for _, id := range set {
		if best == 0 || ranksBefore(h, id, best) {
			best = id
		}
	}
	return best
}

// ranksBefore reports whether a comes before b in the rank of the key
// whose hash is h.
func ranksBefore(h uint64, a, b NodeID) bool {
	wa, wb := mix(h^mix(uint64(a))), mix(h^mix(uint64(b)))
	if wa != wb {
		return wa > wb
	}
	return a > b
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
