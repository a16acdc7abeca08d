package proposer

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
)

func TestProposerForgetPersistsAgeAndRestores(t *testing.T) {
	l := newLoopback()
	ceil := &ceilings{}
	p := newTestProposer(t, l, ceil, nil)
	ctx := servertest.Ctx(t, 10*time.Second)
	if _, err := p.Propose(ctx, incr("k")); err != nil {
		t.Fatal(err)
	}
	if age, err := p.Forget(ctx, nil); err != nil || age != 0 {
		t.Fatalf("probe Forget = %d, %v", age, err)
	}
	far := protocol.Ballot{Counter: 1 << 30, Proposer: 2}
	age, err := p.Forget(ctx, []protocol.Tombstone{{Key: "k", Ballot: far, Version: 9}, {Key: "j", Ballot: far, Version: 9}})
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
	if age, err := p.Forget(ctx, []protocol.Tombstone{{Key: "k", Ballot: top, Version: 9}}); !errors.Is(err, protocol.ErrExhausted) || age != 2 {
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
