package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/storage"
)

// Listing a large key space in pages holds bounded memory on the node and
// in the Go client: the node holds a round's scans (list.Config.BatchKeys
// keys per acceptor, in a few copies on their way through the peer port),
// a page streams out as its rounds are decided, and the client's iterator
// holds one message of the stream, not a page. The measure is the live
// heap (after a collection) at points in the middle of pages, above the
// heap before the listing: it must stay well below one page's values,
// which are half the key space's. A node that built a page's answer in
// memory, or a client that held a page, would hold a page's values by the
// last point of each page. Rounds are smaller than the default here (32
// keys rather than 256) so that their copies stay far below a page (with
// the default and 1 KiB values the node's peak was 6-9 MiB, all of it a
// round's scans in flight: gRPC's 1 MiB buffers, decoded registers). All
// three nodes and the client share this process's heap, so the client's
// measure includes the node's. Not a timing: bytes only.
func TestListingMemoryIsBounded(t *testing.T) {
	const (
		keys       = 10000
		valueBytes = 8 << 10
		pageKeys   = 5000 // one page's values: 40 MiB; the key space's: 80 MiB
		roundKeys  = 32   // keys per acceptor per round: 256 KiB of values
		// The node: a round's scans in flight, in their gRPC buffers
		// (1 MiB each) and decoded copies. The client: one message of the
		// stream (about 1 MiB) and what gRPC's flow control lets it read
		// ahead (its BDP window grows up to 16 MiB); the node's share too.
		nodeBound   = 16 << 20
		clientBound = 24 << 20
	)
	if raceDetector {
		t.Skip("the race detector's shadow memory and slowness: run without -race")
	}
	c := newTestCluster(t, 3, func(c *Config) {
		c.RequestTimeout = 30 * time.Second // a page of 5,000 keys of 8 KiB on a loaded machine
		c.List = list.DefaultConfig()
		c.List.BatchKeys = roundKeys
	})
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	// Fill every node's store directly, as a chosen state on all three
	// (so the listing needs no reads), with the nodes stopped.
	for i := range c.daemons {
		c.stop(i)
	}
	for _, cfg := range c.cfgs {
		fillStore(t, cfg.DataDir, keys, valueBytes)
	}
	for i := range c.daemons {
		c.start(t, i)
	}
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	base := "http://" + c.cfgs[0].ClientAddr

	// HTTP: read each page as a stream, and measure the heap every 1,000
	// items, while the node is in the middle of the page.
	listAll := func(measure bool) (n int, peak uint64) {
		before := liveHeap()
		after := ""
		for {
			resp, err := http.Get(base + "/v1/kv/big/?list&limit=" + fmt.Sprint(pageKeys) + "&after=" + url.QueryEscape(after))
			if err != nil {
				t.Fatal(err)
			}
			more, last, got, p := streamPage(t, resp, func() uint64 {
				if !measure {
					return 0
				}
				h := liveHeap()
				return h - min(before, h)
			})
			resp.Body.Close()
			n += got
			peak = max(peak, p)
			if !more {
				return n, peak
			}
			after = last
		}
	}
	listAll(false) // warm the caches: their growth is not the listing's
	n, peak := listAll(true)
	if n != keys {
		t.Fatalf("HTTP listed %d keys, want %d", n, keys)
	}
	t.Logf("HTTP: %d keys of %d B in pages of %d: live heap at most %.1f MiB above before (bound %d MiB; a page's values are %d MiB)",
		n, valueBytes, pageKeys, float64(peak)/(1<<20), nodeBound>>20, pageKeys*valueBytes>>20)
	if peak > nodeBound {
		t.Fatalf("listing over HTTP held %d bytes more than before, above the bound of %d", peak, nodeBound)
	}

	// The Go client's iterator, pages of pageKeys.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client(t, 0)
	before := liveHeap()
	n, peak = 0, 0
	for it, err := range cl.List(ctx, "big/", client.ListOptions{PageSize: pageKeys}) {
		if err != nil {
			t.Fatal(err)
		}
		if len(it.Value) != valueBytes {
			t.Fatalf("%s: %d bytes", it.Key, len(it.Value))
		}
		if n++; n%1000 == 999 {
			h := liveHeap()
			peak = max(peak, h-min(before, h))
		}
	}
	if n != keys {
		t.Fatalf("the Go client listed %d keys, want %d", n, keys)
	}
	t.Logf("Go client: live heap at most %.1f MiB above before (bound %d MiB)", float64(peak)/(1<<20), clientBound>>20)
	if peak > clientBound {
		t.Fatalf("listing through the Go client held %d bytes more than before, above the bound of %d", peak, clientBound)
	}
}

// fillStore writes keys big/000000... as one chosen state each (every
// node the same ballot) into the store in dir.
func fillStore(t *testing.T, dir string, keys, valueBytes int) {
	t.Helper()
	st, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := protocol.Ballot{Counter: 1, Proposer: 1}
	value := []byte(strings.Repeat("v", valueBytes))
	var batch []storage.Entry
	for i := range keys {
		batch = append(batch, storage.Entry{Key: fmt.Sprintf("big/%06d", i),
			Register: protocol.Register{Promise: b, Accepted: b, State: protocol.State{Value: value, Version: 1}}})
		if len(batch) == 1000 || i == keys-1 {
			if err := st.Apply(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// streamPage decodes a listing page's body item by item, calling measure
// every 1,000 items, and returns more, the last key, the items and the
// highest measure.
func streamPage(t *testing.T, resp *http.Response, measure func() uint64) (more bool, last string, n int, peak uint64) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("list: %s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	expect := func(want json.Delim) {
		t.Helper()
		if tok, err := dec.Token(); err != nil || tok != want {
			t.Fatalf("listing: %v (%v), want %v", tok, err, want)
		}
	}
	expect('{')
	if tok, err := dec.Token(); err != nil || tok != "items" {
		t.Fatalf("listing: %v (%v), want items", tok, err)
	}
	expect('[')
	for dec.More() {
		var it struct {
			Key string `json:"key"`
		}
		if err := dec.Decode(&it); err != nil {
			t.Fatal(err)
		}
		last = it.Key
		if n++; n%1000 == 999 {
			peak = max(peak, measure())
		}
	}
	expect(']')
	if tok, err := dec.Token(); err != nil || tok != "more" {
		t.Fatalf("listing: %v (%v), want more", tok, err)
	}
	if err := dec.Decode(&more); err != nil {
		t.Fatal(err)
	}
	return more, last, n, peak
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // and what sync.Pools kept through the first (their victim caches)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
