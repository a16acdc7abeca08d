package membership

import (
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// TestControllerWaitsForAnEmptyJoiner: growing from 4 acceptors to 5 has no
// catch-up, so a joiner that holds registers is kept out (its stale
// registers could bring back a key GC removed elsewhere) until it is empty.
func TestControllerWaitsForAnEmptyJoiner(t *testing.T) {
	c := newMemberCluster(t, 4)
	ctl := c.controller(1, &localMembers{c: c}, &memChanges{})
	c.start(5, NodeState{})
	stale := protocol.Register{
		Promise:  protocol.Ballot{Counter: 3, Proposer: 2},
		Accepted: protocol.Ballot{Counter: 3, Proposer: 2},
		State:    protocol.State{Value: []byte("old"), Version: 3},
	}
	c.mu.Lock()
	store := c.stores[5]
	c.mu.Unlock()
	if err := store.Apply([]storage.Entry{{Key: "k", Register: stale}}); err != nil {
		t.Fatal(err)
	}
	done, err := ctl.Add(Member{Name: "n5", ID: 5, PeerAddr: "addr-5"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, _ := ctl.Status()
		if ch != nil && strings.Contains(ch.Error, "holds registers") {
			break
		}
		select {
		case <-done:
			t.Fatal("the change finished with a joiner holding a stale register")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change never reported the joiner's registers: %+v", ch)
		}
		time.Sleep(time.Millisecond)
	}
	if ids := c.state(1).Membership().IDs(); len(ids) != 4 {
		t.Fatalf("members while the joiner is refused: %v", ids)
	}
	// The joiner is emptied (a fresh data directory): the change goes on.
	if ok, err := store.Remove("k", stale); err != nil || !ok {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	waitChange(t, done, ctl)
	if ids := c.state(1).Membership().IDs(); len(ids) != 5 {
		t.Fatalf("members after the joiner was emptied: %v", ids)
	}
}
