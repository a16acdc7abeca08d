package protocol

import (
	"errors"
	"slices"
	"testing"
)

func TestBelowFloor(t *testing.T) {
	tests := []struct {
		name    string
		msg     Message
		floor   uint64
		refused bool
	}{
		{"prepare at the floor", Message{Kind: MsgPrepare, Ballot: b(10, 1)}, 10, false},
		{"prepare above the floor", Message{Kind: MsgPrepare, Ballot: b(11, 0)}, 10, false},
		{"prepare below the floor", Message{Kind: MsgPrepare, Ballot: b(9, 7)}, 10, true},
		{"accept below the floor, next above", Message{Kind: MsgAccept, Ballot: b(9, 7), Next: b(12, 7)}, 10, true},
		{"accept at the floor", Message{Kind: MsgAccept, Ballot: b(10, 7), Next: b(12, 7)}, 10, false},
		{"no floor", Message{Kind: MsgPrepare, Ballot: b(1, 1)}, 0, false},
		{"read below the floor", Message{Kind: MsgRead, Ballot: b(1, 1)}, 10, false},
		{"counter past MaxCounter", Message{Kind: MsgPrepare, Ballot: b(MaxCounter+1, 1)}, 0, true},
		{"next past MaxCounter", Message{Kind: MsgAccept, Ballot: b(5, 1), Next: b(MaxCounter+1, 1)}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg.From, tt.msg.To, tt.msg.Key = 7, 3, "k"
			reply, refused := BelowFloor(tt.msg, tt.floor)
			if refused != tt.refused {
				t.Fatalf("refused = %v, want %v", refused, tt.refused)
			}
			if !refused {
				return
			}
			f := Ballot{Counter: tt.floor}
			if reply.Kind != MsgConflict || reply.From != 3 || reply.To != 7 || reply.Key != "k" || reply.Ballot != tt.msg.Ballot {
				t.Fatalf("refusal %v does not answer the request", reply)
			}
			if reply.Seen != f || reply.Accepted != f {
				t.Fatalf("refusal %v must show the floor %d as seen and accepted", reply, tt.floor)
			}
		})
	}
}

func TestBelowFloorPanicsOnReply(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("BelowFloor accepted a reply message")
		}
	}()
	BelowFloor(Message{Kind: MsgPromise}, 1)
}

func TestCeilingFor(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want uint64
	}{
		{"prepare", Message{Kind: MsgPrepare, Ballot: b(7, 2)}, 8},
		{"accept", Message{Kind: MsgAccept, Ballot: b(7, 2)}, 8},
		{"accept with next", Message{Kind: MsgAccept, Ballot: b(7, 2), Next: b(9, 2)}, 10},
		{"read", Message{Kind: MsgRead, Ballot: b(7, 2)}, 0},
		{"at MaxCounter", Message{Kind: MsgPrepare, Ballot: b(MaxCounter, 2)}, MaxCounter + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CeilingFor(tt.msg); got != tt.want {
				t.Fatalf("CeilingFor = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRaiseCeiling(t *testing.T) {
	tests := []struct {
		name       string
		need, step uint64
		want       uint64
	}{
		{"step ahead", 8, 16, 23},
		{"step of one", 8, 1, 8},
		{"default step", 8, 0, 8 + DefaultAcceptorCeilingStep - 1},
		{"capped", MaxCounter - 2, 1 << 20, MaxCounter + 1},
		{"at the cap", MaxCounter + 1, 1 << 20, MaxCounter + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RaiseCeiling(tt.need, tt.step)
			if got != tt.want || got < tt.need {
				t.Fatalf("RaiseCeiling(%d, %d) = %d, want %d", tt.need, tt.step, got, tt.want)
			}
		})
	}
}

func TestSyncBeforeReply(t *testing.T) {
	for k := MsgPrepare; k <= MsgConflict; k++ {
		if want := k != MsgPromise; SyncBeforeReply(Message{Kind: k}) != want {
			t.Errorf("SyncBeforeReply(%s) = %v, want %v", k, !want, want)
		}
	}
}

// TestFloorRefusalIsNoEvidence: an acceptor accepts proposer 1's state
// without syncing it, reveals it in a promise to proposer 2 (§12 allows
// that), crashes and loses it, and restarts with its floor, which refuses
// proposer 1's accept when it arrives again. Proposer 2 adopted the lost
// state and got its own change chosen on top of it. The other acceptors
// refused proposer 1's accept too, so had the floor refusal counted as
// "never accepted here", proposer 1 would judge its state accepted nowhere
// and apply its change a second time (xxx). It must answer
// ErrUnknownOutcome instead.
func TestFloorRefusalIsNoEvidence(t *testing.T) {
	regs := make(map[NodeID]Register)
	floors := make(map[NodeID]uint64)
	var ceiling uint64 // acceptor 3's, as persisted before each of its replies
	acceptor := func(m Message) Message {
		if reply, refused := BelowFloor(m, floors[m.To]); refused {
			return reply
		}
		next, reply, _ := Step(regs[m.To], m)
		regs[m.To] = next
		if m.To == 3 && CeilingFor(m) > ceiling {
			ceiling = RaiseCeiling(CeilingFor(m), 4)
		}
		return reply
	}
	proposer := func(id NodeID, ceiling uint64) *Proposer {
		p, err := NewProposer(ProposerConfig{ID: id, Acceptors: Majority(1, 1, 2, 3), Ceiling: ceiling})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	to := func(msgs []Message, id NodeID) Message {
		return msgs[slices.IndexFunc(msgs, func(m Message) bool { return m.To == id })]
	}
	appendX := func(cur State) (Write, error) {
		return Write{Kind: WriteSet, Value: append(slices.Clone(cur.Value), 'x')}, nil
	}
	p1, p2 := proposer(1, 0), proposer(2, 5)

	p1.Propose(1, "k", appendX)
	for _, m := range p1.Ready().Messages {
		p1.Step(acceptor(m))
	}
	accepts := p1.Ready().Messages
	synced3 := regs[3] // acceptor 3's promise to proposer 1, synced say
	acceptor(to(accepts, 3))
	if string(regs[3].State.Value) != "x" {
		t.Fatalf("acceptor 3 holds %v, want x (unsynced)", regs[3].State)
	}
	// Proposer 2 prepares; acceptor 3's promise reveals the unsynced x.
	// (Its first ballot is below the promise proposer 1's accept carried
	// in Next: refused, it backs off and goes again above it.)
	// (Proposer 2 restarted once, so its ballots are above the promise
	// proposer 1's accept carried in Next.)
	p2.Propose(2, "k", appendX)
	for _, m := range p2.Ready().Messages {
		if m.To != 2 {
			p2.Step(acceptor(m))
		}
	}
	p2accepts := p2.Ready().Messages
	// Proposer 1's accepts reach acceptors 1 and 2 now: refused (promised
	// to proposer 2, or to its one-round-trip Next, nothing accepted).
	acceptor(Message{Kind: MsgPrepare, From: 4, To: 2, Key: "k", Ballot: b(3, 4)}) // a third proposer
	for _, id := range []NodeID{1, 2} {
		p1.Step(acceptor(to(accepts, id)))
	}
	// Proposer 2's accepts reach 1 and 2: xx is chosen.
	for _, id := range []NodeID{1, 2} {
		p2.Step(acceptor(to(p2accepts, id)))
	}
	if rs := p2.Ready().Results; len(rs) != 1 || string(rs[0].State.Value) != "xx" {
		t.Fatalf("proposer 2's results %+v, want xx", rs)
	}
	// Acceptor 3 crashes: its unsynced accept and promise are lost; it
	// restarts with its synced ceiling as its floor.
	regs[3] = synced3
	floors[3] = ceiling
	p1.Step(acceptor(to(accepts, 3)))
	rd := p1.Ready()
	if len(rd.Timers) != 1 || rd.Timers[0].Kind != TimerBackoff {
		t.Fatalf("timers %+v, want one backoff", rd.Timers)
	}
	p1.Fire(rd.Timers[0])
	var results []Result
	for range 4 {
		rd := p1.Ready()
		results = append(results, rd.Results...)
		for _, m := range rd.Messages {
			p1.Step(acceptor(m))
		}
	}
	for id := NodeID(1); id <= 3; id++ {
		if string(regs[id].State.Value) == "xxx" {
			t.Fatalf("acceptor %d holds %v: proposer 1's change was applied twice", id, regs[id].State)
		}
	}
	if len(results) != 1 || !errors.Is(results[0].Err, ErrUnknownOutcome) {
		t.Fatalf("proposer 1's results %+v, want ErrUnknownOutcome", results)
	}
}
