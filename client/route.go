package client

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Routing. Any node serves any key, but a key's changes are proposed by
// its home node (the first of the members in the key's rendezvous order):
// a node that receives a write of a key homed elsewhere forwards it there,
// if the home is near it (docs/routing.md). A client that sends each write
// to its key's home saves the cluster that forward. So once the client has
// learnt which endpoint is which member (Members, in the background, on the
// first write and every RouteRefresh), a write goes first to its key's home
// if that endpoint answers within kv.ForwardMaxRTT of the nearest endpoint (the nodes' own bound
// for forwarding); then
// on, as every call, in the endpoint order. Reads go to the preferred
// endpoint as before: any node reads any key without a forward.

// rttSamples is how many of an endpoint's latest round trips count: the
// smallest of them is its distance, so that answers slowed by load (the
// node's or the client's) do not make a near endpoint look far.
const rttSamples = 8

// routes is what the client knows of the members, replaced whole.
type routes struct {
	members []protocol.NodeID       // the newest membership an endpoint reported
	byID    map[protocol.NodeID]int // endpoint index of each member the client reached
	rtt     []time.Duration         // per endpoint: the smallest of samples
	samples [][]time.Duration       // per endpoint: the latest round trips
	nearest time.Duration
}

// home returns the endpoint of key's home when writes should go there.
func (r *routes) home(key []byte) (int, bool) {
	if r == nil || len(r.members) == 0 {
		return 0, false
	}
	idx, ok := r.byID[protocol.Top(string(key), r.members)]
	if !ok || r.rtt[idx] > r.nearest+kv.ForwardMaxRTT {
		return 0, false
	}
	return idx, true
}

// firstRouteRefresh is the wait before the second refresh of the routes;
// it doubles up to RouteRefresh.
const firstRouteRefresh = 250 * time.Millisecond

// learnRoutes refreshes the routes until the client closes: every
// RouteRefresh, and more often at first (after 0.25 s, 0.5 s, 1 s, ...) so
// that the distances soon rest on several samples.
func (c *Client) learnRoutes() {
	wait := min(firstRouteRefresh, c.cfg.RouteRefresh)
	for {
		c.refreshRoutes()
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, c.cfg.RouteRefresh)
	}
}

// refreshRoutes asks every endpoint who it is and which members it knows,
// timing the call; an endpoint that does not answer drops out of the
// routes until it does.
func (c *Client) refreshRoutes() {
	type answer struct {
		self    protocol.NodeID
		version uint64
		members []protocol.NodeID
		rtt     time.Duration
	}
	answers := make([]*answer, len(c.conns))
	var wg sync.WaitGroup
	for i, conn := range c.conns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
			defer cancel()
			start := time.Now()
			r, err := caspaxospb.NewClusterClient(conn).Members(ctx, &caspaxospb.MembersRequest{})
			if err != nil || r.GetSelfId() == 0 {
				return
			}
			a := &answer{self: protocol.NodeID(r.GetSelfId()), version: r.GetConfigVersion(), rtt: time.Since(start)}
			for _, m := range r.GetMembers() {
				a.members = append(a.members, protocol.NodeID(m.GetId()))
			}
			answers[i] = a
		})
	}
	wg.Wait()
	prev := c.routes.Load()
	next := &routes{byID: make(map[protocol.NodeID]int), rtt: make([]time.Duration, len(c.conns)),
		samples: make([][]time.Duration, len(c.conns))}
	if prev != nil {
		copy(next.samples, prev.samples)
	}
	var version uint64
	for i, a := range answers {
		if a == nil {
			continue
		}
		if a.version >= version {
			version, next.members = a.version, a.members
		}
		next.byID[a.self] = i
		s := append(next.samples[i], a.rtt)
		next.samples[i] = s[max(0, len(s)-rttSamples):len(s):len(s)]
		next.rtt[i] = slices.Min(next.samples[i])
		if next.nearest == 0 || next.rtt[i] < next.nearest {
			next.nearest = next.rtt[i]
		}
	}
	c.routes.Store(next)
}
