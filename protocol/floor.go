package protocol

// Promises without a sync: the acceptor's ceiling and floor (PROTOCOL.md §12).
//
// Step's register rule (§3) needs every promise it gave to survive a crash,
// and syncing each promise before its reply costs a cold write a second sync
// round. The acceptor instead keeps two numbers that hold for all its keys
// at once:
//
//   - the ceiling C, durable: no ballot with a counter >= C has ever been
//     promised or accepted by this acceptor. Before a reply to a prepare or
//     an accept leaves, the durable ceiling must be above every counter the
//     request carries (Ballot, and Next for an accept): CeilingFor says how
//     high, RaiseCeiling how high to raise it when it is not (a step ahead,
//     so that raises, each one sync, are rare).
//   - the floor F, in memory: set to the durable ceiling when the acceptor
//     starts, before it answers anything, and never changed while it runs.
//     BelowFloor refuses every prepare and accept with a counter below F,
//     on every key.
//
// With them, the write of a promise (a prepare's register) no longer has to
// be synced before its reply (SyncBeforeReply); an accept's still does.
//
// Why no promise is ever broken. A promise of ballot B on key k by acceptor
// a means: a never again accepts, and never promises, a ballot <= B on k
// (accepts: < B). While a runs, Step keeps that from the register, which
// every later Step on k sees (duty 1), synced or not. A crash may lose the
// register's promise, but the reply promising B left only once a durable
// ceiling C > B.Counter was on disk, and the ceiling never goes down, so
// after the restart F >= C > B.Counter: every ballot <= B has a counter
// below F and is refused by BelowFloor before Step sees it. Above F,
// nothing was promised before the crash, since F is the ceiling. The floor
// thus acts as a promise of (F, 0) on every key, made before the acceptor
// answers anything. Accepted values are still synced before their reply,
// as are the promises an accept's Next carries (same write).
//
// A promise's reply must not show an accepted state whose write is still
// being synced: only the promise's own write may trail its reply, and the
// reply waits for the key's earlier writes (Step's duty 3 otherwise). Paxos
// alone would let the proposer adopt such a state (it was proposed under
// its ballot), but the proposer also takes matching accepted ballots in a
// quorum of promises as proof that a state is chosen (PROTOCOL.md §4 and
// §6: a refusal answered without committing the state it read). An
// accepted state revealed before it was durable, then lost in a crash, is
// no such proof: the simulator found a failed compare-and-swap answered
// with a tombstone at a version that later held another value (seed 17 of
// the sweep, before this rule).
//
// What the floor refusal shows. It reports (F, 0) as Seen, so the proposer
// fast-forwards past the floor and its retry is admitted. It reports (F, 0)
// as Accepted too: the acceptor may have accepted, before its crash, any
// ballot below F and forgotten it (an unsynced accept whose state a promise
// reply revealed, whose value another proposer may then get chosen), so a
// floor refusal of an accept is no evidence that the acceptor never
// accepted it, and the proposer must not count it as one (noteRefusal
// ignores a refusal whose Accepted is at or above the refused ballot).
//
// Interactions:
//   - Deletion GC (§9): the age fence (Fenced) is checked first; both only
//     refuse. A register removed by step 4 loses its promises like a crash
//     does, and the floor refuses below F on it as on every key; what the
//     fence protects (messages created before step 2) it still protects.
//   - An acceptor emptied before it joins (§8): its data, ceiling included,
//     is gone, so it starts with floor 0. It was removed from every
//     configuration before it was emptied and is added back through the
//     catch-up, which does not rely on anything it promised before, just as
//     when its synced promises are wiped.
//   - Reads (§6) show accepted ballots only, which are synced before they
//     are shown (a read reply waits for the key's writes, duty 3), and
//     promise nothing: the floor does not refuse them and they need no
//     ceiling.

// DefaultAcceptorCeilingStep is how far above a request's counter an
// acceptor raises its ceiling when the request needs it raised.
const DefaultAcceptorCeilingStep uint64 = 1 << 16

// BelowFloor is the floor's refusal (PROTOCOL.md §12): a prepare or an
// accept whose ballot counter is below floor, or past MaxCounter (no
// proposer uses one, and no ceiling could cover it: bad input), is refused
// without looking at the register. It returns the refusal and true in that
// case; reads pass. The refusal needs no sync: it reveals only the floor,
// which is durable (it is a synced ceiling).
//
// BelowFloor panics if m is not a request.
func BelowFloor(m Message, floor uint64) (reply Message, refused bool) {
	if m.Kind == MsgRead {
		return Message{}, false
	}
	if !m.Kind.IsRequest() {
		panic("caspaxos/protocol: acceptor given a " + m.Kind.String() + " message")
	}
	if m.Ballot.Counter >= floor && m.Ballot.Counter <= MaxCounter && m.Next.Counter <= MaxCounter {
		return Message{}, false
	}
	f := Ballot{Counter: floor}
	return Message{Kind: MsgConflict, From: m.To, To: m.From, Key: m.Key, Ballot: m.Ballot, Seen: f, Accepted: f}, true
}

// CeilingFor returns the lowest durable ceiling under which a reply to m may
// leave: one above every ballot counter m carries (Ballot, and Next), or 0
// for a read, which needs none. A request that BelowFloor let through has
// counters at most MaxCounter, so the result is at most MaxCounter + 1.
func CeilingFor(m Message) uint64 {
	if m.Kind == MsgRead {
		return 0
	}
	return max(m.Ballot.Counter, m.Next.Counter) + 1
}

// RaiseCeiling returns the ceiling to persist when a request needs need
// (CeilingFor) and the ceiling asked for so far is below it: step counters
// above the request, so that the next ones need no raise, never past
// MaxCounter + 1 and never below need. A step of 0 takes
// DefaultAcceptorCeilingStep.
func RaiseCeiling(need, step uint64) uint64 {
	if step == 0 {
		step = DefaultAcceptorCeilingStep
	}
	return max(need, addCapped(need, step-1, MaxCounter+1))
}

// SyncBeforeReply reports whether the register a Step asked to persist
// (persist == true) must be durable before reply leaves. A promise's need
// not (§12: the floor keeps it, once the ceiling covers it); an accept's
// must (its state may be chosen). Every reply, a promise's included, still
// waits for the key's earlier writes (Step's duty 3): a promise reveals the
// accepted state, which must be durable before anyone sees it.
func SyncBeforeReply(reply Message) bool { return reply.Kind != MsgPromise }
