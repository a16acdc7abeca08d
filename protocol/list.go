package protocol

// Listing (COORDINATION.md, Listing): a node asks at least ReadQuorum
// acceptors for their registers of a key range, merges the replies by key
// and applies the read rule of PROTOCOL.md §6 to each key. This file is the
// pure part: what one merge of one round of replies decides. Asking, paging
// and the linearizable reads of undecided keys are the caller's
// (server/list). internal/sim runs listings through this merge under every
// fault it has and checks the listing guarantee (internal/sim/list.go).

// ListEntry is one register of an acceptor's scan. ValueOmitted: the
// acceptor left the value out (keys only, or over the asked size), so
// State.Value is nil although the state may be live.
type ListEntry struct {
	Key          string
	Register     Register
	ValueOmitted bool
}

// ListReply is one acceptor's answer to a scan of a key range from a start
// key: its registers in byte order of key. More: it stopped at a limit and
// holds keys after the last entry; a reply with More has at least one entry.
type ListReply struct {
	Entries []ListEntry
	More    bool
}

// ListVerdict says what the read rule made of one key.
type ListVerdict uint8

const (
	// ListChosen: enough replies carry one accepted ballot; State is the
	// key's chosen state (absent or a tombstone included) at some instant
	// between the first reply's and the last reply's.
	ListChosen ListVerdict = iota + 1
	// ListUndecided: the replies disagree; only a linearizable read of the
	// key can tell its state.
	ListUndecided
)

// ListKey is the merge's decision about one key.
type ListKey struct {
	Key          string
	Verdict      ListVerdict
	State        State // ListChosen only
	ValueOmitted bool  // ListChosen only: State.Value was left out
}

// MergeList merges one round of replies, each from a different acceptor of
// the accept set, and applies the read rule with quorum (Config.ReadQuorum)
// to every key any reply holds, in key order.
//
// A reply that stopped at a limit (More) says nothing about the keys after
// its last one, so the merge decides only up to the lowest last key of such
// replies: through is that key, and the next round starts after it. done:
// no reply had More, so the merge covered the whole range.
//
// An acceptor that holds no register for a key counts as a reply carrying
// the zero accepted ballot and the absent state, which is what it answers a
// read of that key (PROTOCOL.md §6). So with fewer than quorum replies no
// key is ever chosen, and callers must not call it with fewer.
//
// Why a chosen verdict is safe for a listing: quorum replies that carry one
// ballot show that its state was accepted by an accept quorum (chosen), and
// since the repliers meet every accept quorum, any state chosen before the
// first reply was sent would show a higher ballot in one of them. A key
// absent from every reply was, by the same argument, absent or deleted for
// good at the first reply; a key live through the call therefore shows a
// live state in some reply, and is either chosen live or undecided.
func MergeList(quorum int, replies []ListReply) (keys []ListKey, through string, done bool) {
	if quorum < 1 {
		panic("caspaxos/protocol: MergeList needs a quorum of at least one")
	}
	done = true
	for _, r := range replies {
		if !r.More {
			continue
		}
		if len(r.Entries) == 0 {
			panic("caspaxos/protocol: a list reply with More must hold an entry")
		}
		last := r.Entries[len(r.Entries)-1].Key
		if done || last < through {
			through = last
		}
		done = false
	}
	pos := make([]int, len(replies)) // each reply's next entry
	for {
		key, ok := nextListKey(replies, pos)
		if !ok || (!done && key > through) {
			return keys, through, done
		}
		keys = append(keys, decideListKey(quorum, key, replies, pos))
	}
}

// nextListKey returns the lowest key among the replies' next entries.
func nextListKey(replies []ListReply, pos []int) (string, bool) {
	var key string
	found := false
	for i, r := range replies {
		if pos[i] < len(r.Entries) && (!found || r.Entries[pos[i]].Key < key) {
			key, found = r.Entries[pos[i]].Key, true
		}
	}
	return key, found
}

// decideListKey applies the read rule to key, whose entries sit at the
// replies' positions pos, and moves those positions past it.
func decideListKey(quorum int, key string, replies []ListReply, pos []int) ListKey {
	var tally []readTally
	var best *ListEntry // an entry of the winning ballot, its value present if any has it
	absent := ListEntry{Key: key}
	for i, r := range replies {
		e := &absent // this acceptor has no register for key
		if pos[i] < len(r.Entries) && r.Entries[pos[i]].Key == key {
			e = &r.Entries[pos[i]]
			pos[i]++
		}
		n := tallyBallot(&tally, e.Register.Accepted)
		if n < quorum {
			continue
		}
		if best == nil || (best.ValueOmitted && !e.ValueOmitted) {
			best = e
		}
	}
	if best == nil {
		return ListKey{Key: key, Verdict: ListUndecided}
	}
	// Other entries of the same ballot carry the same state (one value per
	// ballot), so any of them speaks for the key; prefer one with its value.
	for i := range replies {
		if p := pos[i] - 1; p >= 0 && replies[i].Entries[p].Key == key {
			e := &replies[i].Entries[p]
			if e.Register.Accepted == best.Register.Accepted && !e.ValueOmitted {
				best = e
			}
		}
	}
	return ListKey{Key: key, Verdict: ListChosen, State: best.Register.State, ValueOmitted: best.ValueOmitted}
}

// tallyBallot counts one more reply carrying b and returns how many did.
func tallyBallot(tally *[]readTally, b Ballot) int {
	for i := range *tally {
		if (*tally)[i].ballot == b {
			(*tally)[i].n++
			return (*tally)[i].n
		}
	}
	*tally = append(*tally, readTally{ballot: b, n: 1})
	return 1
}

// ListRoundStale reports whether a listing round asked under the
// configuration asked must be asked again (under now) because its node
// holds now once the round's replies are in.
//
// Why: MergeList's argument needs the repliers (ReadQuorum of asked's
// accept set) to meet every accept and prepare quorum of every
// configuration in use while the replies were made. A membership change
// settles every proposer on one step before it starts the next, so while
// the node holds asked only asked's neighbours are in use; the repliers
// meet the quorums of configurations up to two steps after asked, but not
// always three (TestListQuorumsMeetAcrossPlans: after a grow and a
// shrink, a round's repliers may even include an acceptor removed and
// added back empty). So a round whose node changed configuration while it
// ran, however little, is asked again; changes are rare, and a page's
// deadline bounds the retries.
func ListRoundStale(asked, now Config) bool { return asked.Version != now.Version }
