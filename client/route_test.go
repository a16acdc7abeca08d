package client

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// keyHomedOn returns a key whose home among members 1, 2 and 3 is home.
func keyHomedOn(t *testing.T, home protocol.NodeID) []byte {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("key%d", i)
		if protocol.Top(k, []protocol.NodeID{1, 2, 3}) == home {
			return []byte(k)
		}
	}
	t.Fatalf("no key homed on %d", home)
	return nil
}

func TestRoutesHome(t *testing.T) {
	members := []protocol.NodeID{1, 2, 3}
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		r      *routes
		home   protocol.NodeID
		want   int
		routed bool
	}{
		{"nothing learnt", nil, 1, 0, false},
		{"no members", &routes{}, 1, 0, false},
		{"home reached", &routes{members: members, byID: map[protocol.NodeID]int{1: 2, 2: 0, 3: 1}, rtt: []time.Duration{ms, ms, ms}, nearest: ms}, 1, 2, true},
		{"home not reached", &routes{members: members, byID: map[protocol.NodeID]int{2: 0, 3: 1}, rtt: []time.Duration{ms, ms, 0}, nearest: ms}, 1, 0, false},
		{"home within kv.ForwardMaxRTT", &routes{members: members, byID: map[protocol.NodeID]int{1: 0, 2: 1}, rtt: []time.Duration{ms + kv.ForwardMaxRTT, ms}, nearest: ms}, 1, 0, true},
		{"home too far", &routes{members: members, byID: map[protocol.NodeID]int{1: 0, 2: 1}, rtt: []time.Duration{2*ms + kv.ForwardMaxRTT, ms}, nearest: ms}, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, ok := tc.r.home(keyHomedOn(t, tc.home))
			if ok != tc.routed || (ok && idx != tc.want) {
				t.Fatalf("home: %d %v, want %d %v", idx, ok, tc.want, tc.routed)
			}
		})
	}
}

// Once the client knows the members, each write goes to its key's home
// node; reads stay with the preferred endpoint.
func TestWritesGoToTheirHome(t *testing.T) {
	backends := map[protocol.NodeID]*clientapitest.Backend{}
	var endpoints []string
	for id := protocol.NodeID(1); id <= 3; id++ {
		b := clientapitest.New()
		b.SetMembers(uint64(id), 7, 1, 2, 3)
		addr, _ := clientapitest.ServeGRPC(t, b)
		backends[id] = b
		endpoints = append(endpoints, addr)
	}
	c, err := New(Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Put(ctx, "first", []byte("x")); err != nil { // starts learning
		t.Fatal(err)
	}
	// Routing needs every endpoint reached and within kv.ForwardMaxRTT of the
	// nearest. A first round trip can include the dial and, under -race on
	// a loaded machine, be slower than that; more samples bring each
	// endpoint's distance (their minimum) down.
	routable := func(r *routes) bool {
		if r == nil || len(r.byID) < 3 {
			return false
		}
		for _, home := range []protocol.NodeID{1, 2, 3} {
			if idx, ok := r.home(keyHomedOn(t, home)); !ok || idx != r.byID[home] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for r := c.routes.Load(); !routable(r); r = c.routes.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("routes not learnt: %+v", r)
		}
		c.refreshRoutes()
	}
	homes := map[protocol.NodeID]int{}
	for i := range 60 {
		k := fmt.Sprintf("k%d", i)
		if _, err := c.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
		home := protocol.Top(k, []protocol.NodeID{1, 2, 3})
		homes[home]++
		for id, b := range backends {
			s, _ := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: k})
			if has := s.Exists(); has != (id == home) {
				t.Fatalf("key %s (home %d) on node %d: %v", k, home, id, has)
			}
		}
		// The backends share nothing: a read answered by the preferred
		// endpoint (node 1) finds only the keys homed there.
		if _, err := c.Get(ctx, k); (err == nil) != (home == 1) {
			t.Fatalf("get %s (home %d): %v", k, home, err)
		}
	}
	if len(homes) != 3 {
		t.Fatalf("60 keys spread over %d homes", len(homes))
	}
}

// An endpoint's distance is the smallest of its latest rttSamples round
// trips.
func TestRouteDistanceWindow(t *testing.T) {
	b := clientapitest.New()
	b.SetMembers(4, 1, 4)
	addr, _ := clientapitest.ServeGRPC(t, b)
	c, err := New(Config{Endpoints: []string{addr, deadAddr(t)}, DialTimeout: 200 * time.Millisecond, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range rttSamples + 3 {
		c.refreshRoutes()
	}
	r := c.routes.Load()
	if len(r.samples[0]) != rttSamples || r.rtt[0] != slices.Min(r.samples[0]) || r.nearest != r.rtt[0] {
		t.Fatalf("samples %v, distance %v, nearest %v", r.samples[0], r.rtt[0], r.nearest)
	}
	if len(r.samples[1]) != 0 || r.byID[4] != 0 || len(r.byID) != 1 {
		t.Fatalf("the dead endpoint: samples %v, members reached %v", r.samples[1], r.byID)
	}
	if idx, ok := r.home([]byte("k")); !ok || idx != 0 {
		t.Fatalf("a one-member cluster's home: %d %v", idx, ok)
	}
}
