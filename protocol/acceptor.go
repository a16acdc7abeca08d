package protocol

// Step is the acceptor: it applies request m to the register reg the acceptor
// holds for m.Key and returns the register to store and the reply to send.
//
// The caller's duties:
//  1. Serialize Steps on one key: each Step must see the register the
//     previous Step on that key returned, whether or not it is synced yet.
//  2. When persist is true, write next, in the order of the Steps on its
//     key. If SyncBeforeReply(reply), write it durably (fsync) before reply
//     leaves; otherwise (a promise, PROTOCOL.md §12) the write may trail the
//     reply. Several Steps may share one sync (group commit).
//  3. A reply whose Step returned persist == false must still wait for every
//     earlier write to that key to be synced: it may describe it.
//  4. A register whose Step returned persist == false is unchanged.
//  5. Hand Step only requests that the acceptor-wide checks let through:
//     deletion GC's age fence (Fenced) and the floor (BelowFloor, §12),
//     whose refusals are sent instead. And before a reply to a prepare or an
//     accept leaves, have a durable acceptor ceiling of at least
//     CeilingFor(m) (raise it with RaiseCeiling and sync it first when it
//     is lower). Without duty 5, duty 2 must sync promises too.
//
// Step panics if m is not a request; that is a programming error of the caller.
func Step(reg Register, m Message) (next Register, reply Message, persist bool) {
	reply = Message{From: m.To, To: m.From, Key: m.Key, Ballot: m.Ballot}
	switch m.Kind {
	case MsgPrepare:
		return stepPrepare(reg, m, reply)
	case MsgAccept:
		return stepAccept(reg, m, reply)
	case MsgRead:
		reply.Kind = MsgReadReply
		reply.Accepted = reg.Accepted
		reply.State = reg.State
		return reg, reply, false
	default:
		panic("caspaxos/protocol: acceptor given a " + m.Kind.String() + " message")
	}
}

func conflict(reg Register, reply Message) (Register, Message, bool) {
	reply.Kind = MsgConflict
	reply.Seen = maxBallot(reg.Promise, reg.Accepted)
	reply.Accepted = reg.Accepted
	return reg, reply, false
}

func stepPrepare(reg Register, m Message, reply Message) (Register, Message, bool) {
	// PROTOCOL.md §3 step 2: promise only a ballot higher than any promised
	// or accepted. An equal ballot is a duplicate (or a reuse) and is refused
	// too: a promise must never be granted twice for one ballot, since the
	// second reply could describe a state accepted after the first.
	if m.Ballot.Compare(reg.Promise) <= 0 || m.Ballot.Compare(reg.Accepted) <= 0 {
		return conflict(reg, reply)
	}
	reg.Promise = m.Ballot
	reply.Kind = MsgPromise
	reply.Accepted = reg.Accepted
	reply.State = reg.State
	return reg, reply, true
}

func stepAccept(reg Register, m Message, reply Message) (Register, Message, bool) {
	switch reg.Accepted.Compare(m.Ballot) {
	case 1:
		// Already accepted something newer.
		return conflict(reg, reply)
	case 0:
		// The same ballot again: a duplicate of an accept already applied is
		// confirmed again, even if a promise has since risen past it (the
		// piggybacked Next does exactly that): the acceptor did accept it.
		// A different state under the same ballot means the ballot was
		// reused, and is refused (§5).
		if !reg.State.Equal(m.State) {
			return conflict(reg, reply)
		}
		reply.Kind = MsgAccepted
		return reg, reply, false
	}
	// §3 step 5: refuse a ballot below the promise.
	if reg.Promise.Compare(m.Ballot) > 0 {
		return conflict(reg, reply)
	}
	reg.Accepted = m.Ballot
	reg.State = m.State
	// §5: the next round's promise rides on this accept, in the same write.
	reg.Promise = maxBallot(m.Ballot, m.Next)
	reply.Kind = MsgAccepted
	return reg, reply, true
}

// Fenced is deletion GC's age fence (PROTOCOL.md §9 step 3): an acceptor
// that has recorded minAge for m's sender must refuse a prepare or an
// accept carrying a lower age, without looking at the register. It returns
// the refusal to send and true in that case; reads pass (they change
// nothing). The refusal is a Conflict that shows no ballot, so the proposer
// counts it against its quorum but never takes it as evidence that an
// earlier accept was refused; its Age is the age required.
//
// The acceptor persists minAge per proposer before it reports step 3 done,
// and keeps the highest it was ever given.
func Fenced(m Message, minAge uint64) (reply Message, fenced bool) {
	if m.Age >= minAge || m.Kind == MsgRead {
		return Message{}, false
	}
	if !m.Kind.IsRequest() {
		panic("caspaxos/protocol: acceptor given a " + m.Kind.String() + " message")
	}
	return Message{Kind: MsgConflict, From: m.To, To: m.From, Key: m.Key, Ballot: m.Ballot, Age: minAge}, true
}
