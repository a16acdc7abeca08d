package acceptor

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/servertest"
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
		got := rec.Next(t)
		if len(got) != 1 || got[0].Kind != protocol.MsgConflict || got[0].Age != 5 || got[0].Ballot != m.Ballot {
			t.Fatalf("%v with age %d under fence 5 answered %v, want a conflict naming age 5", m, m.Age, got)
		}
	}
	if reg, _ := st.Get("k"); !reg.Equal(protocol.Register{}) {
		t.Fatalf("a fenced message changed the register: %v", reg)
	}
	// Reads pass, and so does the fence's own age.
	a.Handle([]protocol.Message{aged(readMsg("k", 3), 0)})
	if got := rec.Next(t); got[0].Kind != protocol.MsgReadReply {
		t.Fatalf("read under the fence answered %v", got)
	}
	a.Handle([]protocol.Message{aged(prepareMsg("k", 4), 5)})
	if got := rec.Next(t); got[0].Kind != protocol.MsgPromise {
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
	if got := rec.Next(t); got[0].Kind != protocol.MsgConflict || got[0].Age != 2 {
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
	rec.Next(t)
	a.Handle([]protocol.Message{tomb("newer", 8), prepareMsg("promised", 8)})
	rec.NextN(t, 2) // the promise may leave before the accept
	servertest.WaitFor(t, "the batch to finish", func() bool { return a.Stats().Batches == 2 })
	gc := func(key string) protocol.Tombstone {
		return protocol.Tombstone{Key: key, Ballot: ballot(7), Version: 3, Promise: ballot(7)}
	}
	done, err := a.Collect([]protocol.Tombstone{gc("gone"), gc("newer"), gc("promised"), gc("live"), gc("absent")})
	if err != nil {
		t.Fatal(err)
	}
	// "newer" and "promised" still hold no value: not done, a later round
	// with a fresh GC write takes them.
	if want := []bool{true, false, false, true, true}; !slices.Equal(done, want) {
		t.Fatalf("Collect = %v, want %v", done, want)
	}
	for key, want := range map[string]bool{"gone": false, "newer": true, "promised": true, "live": true} {
		if reg, _ := st.Get(key); !reg.Equal(protocol.Register{}) != want {
			t.Errorf("after Collect, %q holds %v; want kept=%v", key, reg, want)
		}
	}
	// The cached slot was emptied: a prepare now sees no register.
	a.Handle([]protocol.Message{prepareMsg("gone", 9)})
	if got := rec.Next(t); got[0].Kind != protocol.MsgPromise || !got[0].Accepted.IsZero() || got[0].State.Version != 0 {
		t.Fatalf("prepare after Collect answered %v, want a promise over nothing", got)
	}
	a.Stop()
	if _, err := a.Collect(nil); !errors.Is(err, server.ErrStopped) {
		t.Fatalf("Collect after Stop: %v", err)
	}
	if err := a.Fence(nil); !errors.Is(err, server.ErrStopped) {
		t.Fatalf("Fence after Stop: %v", err)
	}
}

// Fence refuses fences past MaxAge and fences far above what the acceptor
// knows of the proposer, changing nothing; CopyFences (a joining node's)
// is bounded by MaxAge only.
func TestAcceptorBoundsFences(t *testing.T) {
	const step = 1 << 20 // acceptor.Config's default MaxFenceStep
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
				rec.Next(t)
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
	if got := rec.Next(t); got[0].Kind != protocol.MsgPromise {
		t.Fatalf("a prepare at MaxAge under a stored fence of 2^64-1 answered %v", got)
	}
}
