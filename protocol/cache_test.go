package protocol

import (
	"slices"
	"strings"
	"testing"
)

// TestCacheBoundedInBytes: the one-round-trip cache keeps its keys and
// values within MaxCachedBytes, dropping the least recently used entries
// first, and keeps no entry larger than the whole bound.
func TestCacheBoundedInBytes(t *testing.T) {
	const over = CacheEntryOverheadBytes
	type write struct {
		key   string
		value int // bytes
	}
	tests := []struct {
		name   string
		bound  int64
		writes []write
		want   []string // keys cached after the writes, most recent first
	}{
		{"all fit", 3 * (over + 101), []write{{"a", 100}, {"b", 100}, {"c", 100}}, []string{"c", "b", "a"}},
		{"oldest dropped", 2 * (over + 101), []write{{"a", 100}, {"b", 100}, {"c", 100}}, []string{"c", "b"}},
		{"one large drops many", over + 1001, []write{{"a", 10}, {"b", 10}, {"c", 1000}}, []string{"c"}},
		{"larger than the bound not kept", over + 100, []write{{"a", 10}, {"b", 1000}}, []string{"a"}},
		{"rewrite moves to front", 2 * (over + 101), []write{{"a", 100}, {"b", 100}, {"a", 100}, {"c", 100}}, []string{"c", "a"}},
		{"key bytes count", 2*over + 2 + 50, []write{{"a", 50}, {strings.Repeat("k", 50), 1}}, []string{strings.Repeat("k", 50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, []NodeID{1, 2, 3}, []NodeID{1}, func(cfg *ProposerConfig) { cfg.MaxCachedBytes = tt.bound })
			p := c.proposers[1]
			for i, w := range tt.writes {
				p.Propose(ReqID(i+1), w.key, set(strings.Repeat("v", w.value)))
				c.run()
				if r := c.results[ReqID(i+1)]; r.Err != nil {
					t.Fatalf("write %d: %v", i, r.Err)
				}
				if p.cacheB > tt.bound {
					t.Fatalf("after write %d the cache holds %d bytes, bound %d", i, p.cacheB, tt.bound)
				}
			}
			var got []string
			var sum int64
			for el := p.lru.Front(); el != nil; el = el.Next() {
				e := el.Value.(*cacheEntry)
				got = append(got, e.key)
				sum += e.bytes()
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("cached %q, want %q", got, tt.want)
			}
			if sum != p.cacheB || len(p.cache) != len(got) {
				t.Fatalf("cache accounting: %d bytes counted, %d held; %d map entries, %d listed", p.cacheB, sum, len(p.cache), len(got))
			}
		})
	}
}

// TestCacheBytesDefault: a zero MaxCachedBytes takes the default.
func TestCacheBytesDefault(t *testing.T) {
	p, err := NewProposer(ProposerConfig{ID: 1, Acceptors: Majority(1, 1, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if p.maxCB != DefaultMaxCachedBytes {
		t.Fatalf("MaxCachedBytes default %d, want %d", p.maxCB, DefaultMaxCachedBytes)
	}
}
