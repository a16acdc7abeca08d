package sim

import "github.com/caspaxos/caspaxos/protocol"

// retirement closes unknown outcomes: it finds, for an operation whose
// outcome is unknown, a time after which it can no longer take effect, so
// that Porcupine need not keep it open to the end of the history. (Open
// unknowns make Porcupine's search exponential in how many are open at
// once; without closing them, a long faulty run cannot be checked.)
//
// The rule. Let o be an operation sent to proposer P (one incarnation) for
// key k. Its change can enter the chosen history only through an accept
// that P sends for k carrying it. P stops sending such accepts once the
// batch o belonged to is over, which is at the latest when every request
// P had pending on k when o was answered has been answered too (or when P
// crashes). Let bmax be the highest ballot of any accept P sent for k up
// to then, or may still send (an accept waiting in a Ready for its
// ceiling's sync; a crash drops those, unsent). Once some ballot B > bmax
// is chosen on k (accepted by an accept quorum in synced storage), o's
// fate is sealed: every state accepted at a ballot above B derives from
// B's state (the prepare or piggybacked promise of any higher ballot meets
// B's quorum), so if o is in the chosen history it is in B's state, which
// was chosen by then; and if it is not, it never will be. o is therefore
// closed with return time "when B was chosen, or when o's batch was over,
// whichever is later": it took effect before then, or never.
//
// Closing only narrows what Porcupine may assume about an operation, so it
// can only find more violations, never hide one; a rule that closed too
// early would show up as false alarms. Options.NoRetire turns it off.
type retirement struct {
	waiting []*retireWait            // unknowns whose proposer may still send their change
	open    map[string][]openUnknown // per key: unknowns waiting for a chosen ballot above bmax
}

type retireWait struct {
	o       *op
	node    int
	inc     uint64
	waitFor map[protocol.ReqID]bool
}

type openUnknown struct {
	o    *op
	bmax protocol.Ballot
}

func newRetirement() retirement {
	return retirement{open: make(map[string][]openUnknown)}
}

// onUnknown starts closing o, answered with ErrUnknownOutcome by n.
func (r *retirement) onUnknown(s *sim, n *node, o *op) {
	if s.opts.NoRetire {
		return
	}
	w := &retireWait{o: o, node: n.idx, inc: n.inc, waitFor: make(map[protocol.ReqID]bool)}
	for id, key := range n.pending {
		if key == o.in.key {
			w.waitFor[id] = true
		}
	}
	if len(w.waitFor) == 0 {
		r.settle(s, o, n.maxAccept(o.in.key))
		return
	}
	r.waiting = append(r.waiting, w)
}

// onLost starts closing o, never answered because n crashed.
func (r *retirement) onLost(s *sim, n *node, o *op) {
	if !s.opts.NoRetire {
		r.settle(s, o, n.maxAccept(o.in.key))
	}
}

// onAnswered notes that n's proposer answered request id on key.
func (r *retirement) onAnswered(s *sim, n *node, id protocol.ReqID, key string) {
	keep := r.waiting[:0]
	for _, w := range r.waiting {
		if w.node == n.idx && w.inc == n.inc && w.o.in.key == key {
			delete(w.waitFor, id)
			if len(w.waitFor) == 0 {
				r.settle(s, w.o, n.maxAccept(key))
				continue
			}
		}
		keep = append(keep, w)
	}
	clear(r.waiting[len(keep):])
	r.waiting = keep
}

// onCrash: n's proposer sends nothing more, so its waiting unknowns settle.
func (r *retirement) onCrash(s *sim, n *node) {
	keep := r.waiting[:0]
	for _, w := range r.waiting {
		if w.node == n.idx && w.inc == n.inc {
			r.settle(s, w.o, n.maxAccept(w.o.in.key))
			continue
		}
		keep = append(keep, w)
	}
	clear(r.waiting[len(keep):])
	r.waiting = keep
}

// settle: o's change travels in no accept above bmax.
func (r *retirement) settle(s *sim, o *op, bmax protocol.Ballot) {
	if bmax.Less(s.inv.chosen[o.in.key]) {
		r.close(s, o)
		return
	}
	r.open[o.in.key] = append(r.open[o.in.key], openUnknown{o: o, bmax: bmax})
}

// onChosen: ballot b was chosen on key.
func (r *retirement) onChosen(s *sim, key string, b protocol.Ballot) {
	open := r.open[key]
	keep := open[:0]
	for _, u := range open {
		if u.bmax.Less(b) {
			r.close(s, u.o)
			continue
		}
		keep = append(keep, u)
	}
	clear(open[len(keep):])
	r.open[key] = keep
}

func (r *retirement) close(s *sim, o *op) {
	o.closed, o.closeAt = true, s.now
	s.stats.ClosedUnknowns++
}
