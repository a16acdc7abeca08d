package server

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

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
	rec.next(t)
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
