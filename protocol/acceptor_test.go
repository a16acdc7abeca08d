package protocol

import "testing"

func b(c uint64, p NodeID) Ballot { return Ballot{Counter: c, Proposer: p} }

func TestAcceptorStep(t *testing.T) {
	v1 := State{Value: []byte("one"), Version: 1}
	v2 := State{Value: []byte("two"), Version: 2}
	held := Register{Promise: b(5, 1), Accepted: b(4, 1), State: v1}
	tests := []struct {
		name    string
		reg     Register
		msg     Message
		kind    Kind
		persist bool
		want    Register
	}{
		{"prepare fresh", Register{}, Message{Kind: MsgPrepare, Ballot: b(1, 1)}, MsgPromise, true,
			Register{Promise: b(1, 1)}},
		{"prepare higher", held, Message{Kind: MsgPrepare, Ballot: b(6, 2)}, MsgPromise, true,
			Register{Promise: b(6, 2), Accepted: b(4, 1), State: v1}},
		{"prepare equal to promise", held, Message{Kind: MsgPrepare, Ballot: b(5, 1)}, MsgConflict, false, held},
		{"prepare below promise", held, Message{Kind: MsgPrepare, Ballot: b(5, 0)}, MsgConflict, false, held},
		{"prepare equal to accepted", Register{Accepted: b(4, 1)}, Message{Kind: MsgPrepare, Ballot: b(4, 1)}, MsgConflict, false,
			Register{Accepted: b(4, 1)}},
		{"accept at promise", held, Message{Kind: MsgAccept, Ballot: b(5, 1), State: v2}, MsgAccepted, true,
			Register{Promise: b(5, 1), Accepted: b(5, 1), State: v2}},
		{"accept with next", held, Message{Kind: MsgAccept, Ballot: b(5, 1), Next: b(7, 1), State: v2}, MsgAccepted, true,
			Register{Promise: b(7, 1), Accepted: b(5, 1), State: v2}},
		{"accept above promise", held, Message{Kind: MsgAccept, Ballot: b(9, 3), State: v2}, MsgAccepted, true,
			Register{Promise: b(9, 3), Accepted: b(9, 3), State: v2}},
		{"accept below promise", held, Message{Kind: MsgAccept, Ballot: b(4, 9), State: v2}, MsgConflict, false, held},
		{"accept below accepted", Register{Accepted: b(4, 1), State: v1}, Message{Kind: MsgAccept, Ballot: b(3, 1), State: v2}, MsgConflict, false,
			Register{Accepted: b(4, 1), State: v1}},
		{"duplicate accept after next promise", held, Message{Kind: MsgAccept, Ballot: b(4, 1), State: v1}, MsgAccepted, false, held},
		{"same ballot, other state", held, Message{Kind: MsgAccept, Ballot: b(4, 1), State: v2}, MsgConflict, false, held},
		{"read", held, Message{Kind: MsgRead, Ballot: b(1, 2)}, MsgReadReply, false, held},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg.From, tt.msg.To, tt.msg.Key = 7, 3, "k"
			next, reply, persist := Step(tt.reg, tt.msg)
			if reply.Kind != tt.kind || persist != tt.persist {
				t.Fatalf("reply %v persist=%v, want %v persist=%v", reply, persist, tt.kind, tt.persist)
			}
			if reply.From != 3 || reply.To != 7 || reply.Key != "k" || reply.Ballot != tt.msg.Ballot {
				t.Fatalf("reply %v does not echo the request", reply)
			}
			if next.String() != tt.want.String() {
				t.Fatalf("register %v, want %v", next, tt.want)
			}
			switch reply.Kind {
			case MsgConflict:
				if reply.Seen != maxBallot(tt.reg.Promise, tt.reg.Accepted) || reply.Accepted != tt.reg.Accepted {
					t.Fatalf("conflict %v does not show the register's ballots", reply)
				}
			case MsgPromise, MsgReadReply:
				if reply.Accepted != tt.reg.Accepted || !reply.State.Equal(tt.reg.State) {
					t.Fatalf("reply %v does not carry the accepted state", reply)
				}
			}
		})
	}
}

func TestStepPanicsOnReply(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Step accepted a reply message")
		}
	}()
	Step(Register{}, Message{Kind: MsgPromise})
}
