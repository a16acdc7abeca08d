package node_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// A huge fence does not block writes, restarts included: GC.Fence with
// 2^64-1 is refused, and a fence above the proposer's age but within the
// bound is learnt by the proposer from the first refusal (and persisted).
func TestHugeFenceDoesNotBlockWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fence   uint64
		refused bool
	}{
		{"2^64-1", math.MaxUint64, true},
		{"past MaxAge", protocol.MaxAge + 1, true},
		{"far above the bound", 1 << 40, true},
		{"above the proposer's age, within the bound", 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nodetest.New(t, 3)
			ids := []protocol.NodeID{1, 2, 3}
			key := nodetest.KeyHomedAt(t, 1, ids)
			ctx := servertest.Ctx(t, 20*time.Second)
			if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("a")}); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				err := c.Node(id).Fence(map[protocol.NodeID]uint64{1: tc.fence})
				if got := errors.Is(err, acceptor.ErrFenceTooHigh); got != tc.refused {
					t.Fatalf("node %d: Fence(%d) = %v, want refused %v", id, tc.fence, err, tc.refused)
				}
			}
			for restart := range 2 {
				if restart == 1 {
					c.Restart(t)
				}
				if _, err := c.Node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("b")}); err != nil {
					t.Fatalf("write after the fence (restarted: %v): %v", restart == 1, err)
				}
			}
			if age, _ := c.Stores[0].Age(); !tc.refused && age != tc.fence {
				t.Fatalf("proposer 1 persisted age %d, want the learnt %d", age, tc.fence)
			}
		})
	}
}
