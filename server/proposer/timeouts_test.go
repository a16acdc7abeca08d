package proposer

import (
	"fmt"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

type fixedDistances map[protocol.NodeID]time.Duration

func (f fixedDistances) RTT(id protocol.NodeID) (time.Duration, bool) {
	d, ok := f[id]
	return d, ok
}

func TestNearestQuorums(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name          string
		cfg           protocol.Config
		dist          fixedDistances
		read, attempt time.Duration
	}{
		{"LAN", protocol.Majority(1, 1, 2, 3), fixedDistances{2: 1 * ms, 3: 2 * ms}, 1 * ms, 1 * ms},
		// Node 1 and the nearer of the other two make a quorum.
		{"WAN", protocol.Majority(1, 1, 2, 3), fixedDistances{2: 169 * ms, 3: 189 * ms}, 169 * ms, 169 * ms},
		{"unmeasured peers count as near", protocol.Majority(1, 1, 2, 3), fixedDistances{3: 189 * ms}, 0, 0},
		// A failed peer that is settling stretches nothing: twice kv.FailedRTT
		// would stall an attempt whose messages a healed partition lost.
		{"failed peers count as unmeasured", protocol.Majority(1, 1, 2, 3), fixedDistances{2: kv.FailedRTT, 3: kv.FailedRTT}, 0, 0},
		// 4 acceptors, quorum 3 (and read quorum 3): the third nearest.
		{"even", protocol.Config{Version: 2, PrepareSet: []protocol.NodeID{1, 2, 3}, PrepareQuorum: 2, AcceptSet: []protocol.NodeID{1, 2, 3, 4}, AcceptQuorum: 3},
			fixedDistances{2: 10 * ms, 3: 20 * ms, 4: 30 * ms}, 20 * ms, 20 * ms},
		// Node 1 is no acceptor: every quorum member is remote.
		{"not an acceptor", protocol.Majority(1, 2, 3, 4), fixedDistances{2: 5 * ms, 3: 7 * ms, 4: 9 * ms}, 7 * ms, 7 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nearestQuorums(tc.cfg, 1, tc.dist)
			if got.read != tc.read || got.attempt != tc.attempt {
				t.Errorf("nearestQuorums = read %v, attempt %v; want %v, %v", got.read, got.attempt, tc.read, tc.attempt)
			}
		})
	}
}

func TestProximityTiers(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		dist fixedDistances
		want [][]protocol.NodeID
	}{
		{"LAN: one tier", fixedDistances{2: 1 * ms, 3: 2 * ms}, [][]protocol.NodeID{{2, 3}}},
		{"unmeasured is near", fixedDistances{3: 2 * ms}, [][]protocol.NodeID{{2, 3}}},
		{"WAN: nearest first", fixedDistances{2: 189 * ms, 3: 22 * ms}, [][]protocol.NodeID{nil, {3}, {2}}},
		{"a failed peer in no tier", fixedDistances{2: kv.FailedRTT, 3: 1 * ms}, [][]protocol.NodeID{{3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := proximityTiers([]protocol.NodeID{1, 2, 3}, 1, tc.dist)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("proximityTiers = %v, want %v", got, tc.want)
			}
		})
	}
}

// A retry waits BackoffBase, or the round trip to the nearest quorum if
// that is longer, doubled per earlier retry and capped; jittered into the
// upper half.
func TestRetryDelayFollowsTheRoundTrip(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		dist     server.Distancer
		retry    int
		min, max time.Duration
	}{
		{"nothing measured", nil, 1, 1 * ms, 2 * ms},
		{"LAN", fixedDistances{2: ms / 2, 3: ms / 2}, 1, 1 * ms, 2 * ms},
		{"LAN, third retry", fixedDistances{2: ms / 2, 3: ms / 2}, 3, 4 * ms, 8 * ms},
		{"WAN", fixedDistances{2: 80 * ms, 3: 90 * ms}, 1, 40 * ms, 80 * ms},
		{"WAN, third retry", fixedDistances{2: 80 * ms, 3: 90 * ms}, 3, 100 * ms, 200 * ms},
		{"round trip above BackoffMax", fixedDistances{2: 300 * ms, 3: 300 * ms}, 4, 150 * ms, 300 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProposer(t, newLoopback(), &ceilings{}, func(c *Config) {
				c.BackoffBase, c.BackoffMax, c.Distances = 2*ms, 200*ms, tc.dist
			})
			p.Stop() // the driver's state is the test's now
			now := time.Now()
			for range 100 {
				if d := p.retryDelay(tc.retry, now); d < tc.min || d > tc.max {
					t.Fatalf("retryDelay(%d) = %v, want within [%v, %v]", tc.retry, d, tc.min, tc.max)
				}
			}
		})
	}
}
