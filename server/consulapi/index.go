package consulapi

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/caspaxos/caspaxos/kv"
)

// A prefix's index (X-Consul-Index of a recurse or keys query).
//
// Consul answers a listing with the highest index of the keys under it
// and of their tombstones: a number from its global log. caspaxos has no
// global log, so a prefix's index is this node's own counter: each time
// a listing of the prefix differs from the last one this node saw (a key
// added, changed or gone: its set of (key, version) pairs, hashed), the
// prefix takes the counter's next value. So the index rises whenever a
// key under the prefix changes, as a blocking query needs, but it is one
// node's: another node gives the same prefix another index, and the
// counter starts again at a restart. Consul's contract covers this: a
// client that sees an index lower than the one it holds resets to 0 (its
// next query returns at once), and a blocking query here returns at once
// whenever the asked index is not the prefix's current one, lower or
// higher.
//
// The node remembers at most Config.MaxPrefixIndexes prefixes; the oldest
// remembered is forgotten first. A forgotten prefix takes a new index at
// its next listing: a blocking query on it returns early once, which
// Consul's contract allows (a return is no promise of a change).

// digest is the hash of a listing's (key, version) pairs.
type digest [sha256.Size]byte

// listingDigest hashes items' keys and versions, in order.
func listingDigest(items []kv.ListItem) digest {
	h := sha256.New()
	var n [8]byte
	for _, it := range items {
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Key)))
		h.Write(n[:])
		h.Write([]byte(it.Key))
		binary.BigEndian.PutUint64(n[:], it.Version)
		h.Write(n[:])
	}
	var d digest
	h.Sum(d[:0])
	return d
}

// prefixIndexes is the node's counter and what it remembers per prefix.
type prefixIndexes struct {
	mu      sync.Mutex
	max     int
	counter uint64
	seen    map[string]prefixMark
	order   []string // remembered prefixes, oldest first
}

type prefixMark struct {
	d     digest
	index uint64
}

func newPrefixIndexes(max int) *prefixIndexes {
	return &prefixIndexes{max: max, seen: make(map[string]prefixMark)}
}

// observe records a listing of prefix with digest d and returns the
// prefix's index: the one it had if the listing is the same as the last
// one seen, the counter's next value otherwise.
func (p *prefixIndexes) observe(prefix string, d digest) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.seen[prefix]
	if ok && m.d == d {
		return m.index
	}
	p.counter++
	if !ok {
		if len(p.order) >= p.max {
			delete(p.seen, p.order[0])
			p.order = p.order[1:]
		}
		p.order = append(p.order, prefix)
	}
	p.seen[prefix] = prefixMark{d: d, index: p.counter}
	return p.counter
}
