package server

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

func aged(m protocol.Message, age uint64) protocol.Message {
	m.Age = age
	return m
}

func TestAcceptorRefusesFencedMessages(t *testing.T) {
	st := storage.NewMemory()
	a, rec := newTestAcceptor(t, st)
	if err := a.Fence(map[protocol.NodeID]uint64{proposerID: 5}); err != nil {
		t.Fatal(err)
	}
	if f, _ := st.Fences(); f[proposerID] != 5 {
		t.Fatalf("fence not persisted: %v", f)
	}
	// A lower fence later changes nothing.
	if err := a.Fence(map[protocol.NodeID]uint64{proposerID: 3}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []protocol.Message{aged(prepareMsg("k", 1), 4), aged(acceptMsg("k", 2, "v"), 0)} {
		a.Handle([]protocol.Message{m})
		got := rec.next(t)
		if len(got) != 1 || got[0].Kind != protocol.MsgConflict || got[0].Age != 5 || got[0].Ballot != m.Ballot {
			t.Fatalf("%v with age %d under fence 5 answered %v, want a conflict naming age 5", m, m.Age, got)
		}
	}
	if reg, _ := st.Get("k"); !registersEqual(reg, protocol.Register{}) {
		t.Fatalf("a fenced message changed the register: %v", reg)
	}
	// Reads pass, and so does the fence's own age.
	a.Handle([]protocol.Message{aged(readMsg("k", 3), 0)})
	if got := rec.next(t); got[0].Kind != protocol.MsgReadReply {
		t.Fatalf("read under the fence answered %v", got)
	}
	a.Handle([]protocol.Message{aged(prepareMsg("k", 4), 5)})
	if got := rec.next(t); got[0].Kind != protocol.MsgPromise {
		t.Fatalf("prepare with age 5 under fence 5 answered %v", got)
	}
}

func TestAcceptorLoadsFencesAtStart(t *testing.T) {
	st := storage.NewMemory()
	if err := st.SetFences(map[protocol.NodeID]uint64{proposerID: 2}); err != nil {
		t.Fatal(err)
	}
	a, rec := newTestAcceptor(t, st)
	a.Handle([]protocol.Message{aged(prepareMsg("k", 1), 1)})
	if got := rec.next(t); got[0].Kind != protocol.MsgConflict || got[0].Age != 2 {
		t.Fatalf("after a restart, a prepare under the persisted fence answered %v", got)
	}
}

func TestAcceptorCollect(t *testing.T) {
	st := storage.NewMemory()
	a, rec := newTestAcceptor(t, st)
	tomb := func(key string, counter uint64) protocol.Message {
		m := acceptMsg(key, counter, "")
		m.State = protocol.State{Version: 3, Deleted: true}
		return m
	}
	// "gone" holds the tombstone under 7, "newer" was accepted again
	// since, "promised" promised a higher ballot since (to a proposer that
	// may accept on top of the tombstone), "live" holds a value; all are
	// cached in the acceptor.
	a.Handle([]protocol.Message{tomb("gone", 7), tomb("newer", 7), tomb("promised", 7), acceptMsg("live", 7, "v")})
	rec.next(t)
	a.Handle([]protocol.Message{tomb("newer", 8), prepareMsg("promised", 8)})
	rec.nextN(t, 2) // the promise may leave before the accept
	waitFor(t, "the batch to finish", func() bool { return a.Stats().Batches == 2 })
	gc := func(key string) Tombstone {
		return Tombstone{Key: key, Ballot: ballot(7), Version: 3, Promise: ballot(7)}
	}
	done, err := a.Collect([]Tombstone{gc("gone"), gc("newer"), gc("promised"), gc("live"), gc("absent")})
	if err != nil {
		t.Fatal(err)
	}
	// "newer" and "promised" still hold no value: not done, a later round
	// with a fresh GC write takes them.
	if want := []bool{true, false, false, true, true}; !slices.Equal(done, want) {
		t.Fatalf("Collect = %v, want %v", done, want)
	}
	for key, want := range map[string]bool{"gone": false, "newer": true, "promised": true, "live": true} {
		if reg, _ := st.Get(key); !registersEqual(reg, protocol.Register{}) != want {
			t.Errorf("after Collect, %q holds %v; want kept=%v", key, reg, want)
		}
	}
	// The cached slot was emptied: a prepare now sees no register.
	a.Handle([]protocol.Message{prepareMsg("gone", 9)})
	if got := rec.next(t); got[0].Kind != protocol.MsgPromise || !got[0].Accepted.IsZero() || got[0].State.Version != 0 {
		t.Fatalf("prepare after Collect answered %v, want a promise over nothing", got)
	}
	a.Stop()
	if _, err := a.Collect(nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Collect after Stop: %v", err)
	}
	if err := a.Fence(nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Fence after Stop: %v", err)
	}
}

func TestProposerForgetPersistsAgeAndRestores(t *testing.T) {
	l := newLoopback()
	ceil := &ceilings{}
	p := newTestProposer(t, l, ceil, nil)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := p.Propose(ctx, incr("k")); err != nil {
		t.Fatal(err)
	}
	if age, err := p.Forget(ctx, nil); err != nil || age != 0 {
		t.Fatalf("probe Forget = %d, %v", age, err)
	}
	far := protocol.Ballot{Counter: 1 << 30, Proposer: 2}
	age, err := p.Forget(ctx, []Tombstone{{Key: "k", Ballot: far, Version: 9}, {Key: "j", Ballot: far, Version: 9}})
	if err != nil || age != 2 || ceil.age.Load() != 2 {
		t.Fatalf("Forget = %d, %v (persisted %d); want 2, persisted", age, err, ceil.age.Load())
	}
	// Later messages carry the age and a ballot past the tombstone's.
	var sent []protocol.Message
	l.check = func(msgs []protocol.Message) { sent = append(sent, msgs...) }
	if _, err := p.Propose(ctx, incr("k")); err != nil {
		t.Fatal(err)
	}
	l.check = nil
	if len(sent) == 0 || sent[0].Age != 2 || !far.Less(sent[0].Ballot) || sent[0].Kind != protocol.MsgPrepare {
		t.Fatalf("after Forget sent %v, want a prepare with age 2 past %s", sent, far)
	}
	// A tombstone near 2^64 (bad input) is refused: no wrap of the
	// ceiling, and the proposer keeps working.
	before := ceil.v.Load()
	top := protocol.Ballot{Counter: math.MaxUint64, Proposer: 2}
	if age, err := p.Forget(ctx, []Tombstone{{Key: "k", Ballot: top, Version: 9}}); !errors.Is(err, protocol.ErrExhausted) || age != 2 {
		t.Fatalf("Forget of a tombstone at counter 2^64-1 = %d, %v; want 2, ErrExhausted", age, err)
	}
	if c := ceil.v.Load(); c != before {
		t.Fatalf("the refused Forget moved the ceiling from %d to %d", before, c)
	}
	if _, err := p.Propose(ctx, incr("k")); err != nil {
		t.Fatalf("a change after the refused Forget: %v", err)
	}
	p.Stop()
	// A restart restores the age.
	q := newTestProposer(t, newLoopback(), ceil, nil)
	if age, err := q.Forget(ctx, nil); err != nil || age != 2 {
		t.Fatalf("restarted proposer's age = %d, %v; want 2", age, err)
	}
}

// Fence refuses fences past MaxAge and fences far above what the acceptor
// knows of the proposer, changing nothing; CopyFences (a joining node's)
// is bounded by MaxAge only.
func TestAcceptorBoundsFences(t *testing.T) {
	const step = 1 << 20 // AcceptorConfig's default MaxFenceStep
	for _, tc := range []struct {
		name  string
		seen  uint64 // an age the proposer's requests showed first (0: none)
		fence uint64
		copy  bool
		want  error
	}{
		{name: "2^64-1", fence: math.MaxUint64, want: ErrFenceTooHigh},
		{name: "past MaxAge", fence: protocol.MaxAge + 1, want: ErrFenceTooHigh},
		{name: "one step above the fence", fence: 7 + step},
		{name: "past one step above the fence", fence: 7 + step + 1, want: ErrFenceTooHigh},
		{name: "one step above a seen age", seen: 5000, fence: 5000 + step},
		{name: "past one step above a seen age", seen: 5000, fence: 5000 + step + 1, want: ErrFenceTooHigh},
		{name: "a copy far above", fence: 1 << 40, copy: true},
		{name: "a copy at 2^64-1", fence: math.MaxUint64, copy: true, want: ErrFenceTooHigh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storage.NewMemory()
			if err := st.SetFences(map[protocol.NodeID]uint64{proposerID: 7}); err != nil {
				t.Fatal(err)
			}
			a, rec := newTestAcceptor(t, st)
			if tc.seen != 0 {
				a.Handle([]protocol.Message{aged(prepareMsg("k", 1), tc.seen)})
				rec.next(t)
			}
			set := a.Fence
			if tc.copy {
				set = a.CopyFences
			}
			err := set(map[protocol.NodeID]uint64{proposerID: tc.fence, 4: 1})
			if !errors.Is(err, tc.want) {
				t.Fatalf("fence %d: %v, want %v", tc.fence, err, tc.want)
			}
			want := map[protocol.NodeID]uint64{proposerID: tc.fence, 4: 1}
			if tc.want != nil {
				want = map[protocol.NodeID]uint64{proposerID: 7} // nothing changed
			}
			if f, _ := st.Fences(); !maps.Equal(f, want) {
				t.Fatalf("persisted fences %v, want %v", f, want)
			}
		})
	}
}

// A fence persisted past MaxAge (by a release without the bound) is
// lowered to MaxAge at start, so its proposer can still reach it.
func TestAcceptorLowersFencesPastMaxAgeAtStart(t *testing.T) {
	st := storage.NewMemory()
	if err := st.SetFences(map[protocol.NodeID]uint64{proposerID: math.MaxUint64}); err != nil {
		t.Fatal(err)
	}
	a, rec := newTestAcceptor(t, st)
	a.Handle([]protocol.Message{aged(prepareMsg("k", 1), protocol.MaxAge)})
	if got := rec.next(t); got[0].Kind != protocol.MsgPromise {
		t.Fatalf("a prepare at MaxAge under a stored fence of 2^64-1 answered %v", got)
	}
}

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
			c := newTestCluster(t, 3)
			ids := []protocol.NodeID{1, 2, 3}
			key := keyHomedAt(t, 1, ids)
			ctx := ctxTimeout(t, 20*time.Second)
			if _, err := c.node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("a")}); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				err := c.node(id).Fence(map[protocol.NodeID]uint64{1: tc.fence})
				if got := errors.Is(err, ErrFenceTooHigh); got != tc.refused {
					t.Fatalf("node %d: Fence(%d) = %v, want refused %v", id, tc.fence, err, tc.refused)
				}
			}
			for restart := range 2 {
				if restart == 1 {
					c.restart(t)
				}
				if _, err := c.node(1).Do(ctx, kv.Op{Kind: kv.OpPut, Key: key, Value: []byte("b")}); err != nil {
					t.Fatalf("write after the fence (restarted: %v): %v", restart == 1, err)
				}
			}
			if age, _ := c.stores[0].Age(); !tc.refused && age != tc.fence {
				t.Fatalf("proposer 1 persisted age %d, want the learnt %d", age, tc.fence)
			}
		})
	}
}

// restart stops every node and starts it again on its store, on a new
// network.
func (c *testCluster) restart(t *testing.T) {
	t.Helper()
	for _, n := range c.nodes {
		n.Stop()
	}
	ids := make([]protocol.NodeID, len(c.nodes))
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	c.net = NewLocal()
	for i, id := range ids {
		ep := c.net.Endpoint(id)
		node, err := NewNode(fastConfig(id, protocol.Majority(1, ids...)), c.stores[i], ep, ep, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.net.Add(node); err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = node
	}
}
