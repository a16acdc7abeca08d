package sim

import (
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// eventKind names what an event does when its time comes.
type eventKind uint8

const (
	// evDeliver hands msg to node (the message's To).
	evDeliver eventKind = iota + 1
	// evSyncDone completes the sync in flight on node, if node is still the
	// incarnation inc.
	evSyncDone
	// evTimer fires timer on node's proposer, if node is still incarnation inc.
	evTimer
	// evClientNext lets client issue its next operation.
	evClientNext
	// evDeadline makes client give up on request req.
	evDeadline
	// evFaultStart begins a fault of kind fault.
	evFaultStart
	// evFaultEnd ends it (for a crash: restarts node).
	evFaultEnd
	// evGC advances the deletion GC (see gc.go).
	evGC
	// evMember advances the membership change (see member.go).
	evMember
	// evLease runs a lease actor (event.client; see lease.go), or times
	// out its request req.
	evLease
	// evScan hands a listing's scan to the acceptor of node, and
	// evScanReply its reply to the lister's node (scan; see list.go).
	evScan
	evScanReply
	// evListNext lets lister client begin its next page; evListDeadline
	// ends page req if it still runs; evListStep lets page req go on
	// after a read.
	evListNext
	evListDeadline
	evListStep
	// evWatch carries watch, a watcher's or hint stream's step (watch.go).
	evWatch
	// evLock runs a lock actor (event.client; see lock.go), or times out
	// its request req.
	evLock
)

var eventNames = [...]string{
	evDeliver:      "deliver",
	evSyncDone:     "sync-done",
	evTimer:        "timer",
	evClientNext:   "client-next",
	evDeadline:     "deadline",
	evFaultStart:   "fault-start",
	evFaultEnd:     "fault-end",
	evGC:           "gc",
	evMember:       "member",
	evLease:        "lease",
	evScan:         "scan",
	evScanReply:    "scan-reply",
	evListNext:     "list-next",
	evListDeadline: "list-deadline",
	evListStep:     "list-step",
	evWatch:        "watch",
	evLock:         "lock",
}

func (k eventKind) String() string { return eventNames[k] }

// event is one entry of the simulator's agenda. Which fields matter depends
// on kind (see the constants).
type event struct {
	at     time.Duration // virtual time
	seq    uint64        // tie-break: events at one time run in scheduling order
	kind   eventKind
	node   int // node index (0-based; NodeID is index+1)
	inc    uint64
	client int
	req    protocol.ReqID
	fault  faultKind
	msg    protocol.Message
	timer  protocol.Timer
	scan   *scanMsg
	watch  *watchMsg
}

// agenda is a min-heap of events ordered by (at, seq). Since seq is unique,
// the order is total and the run does not depend on heap internals.
type agenda []*event

func (a agenda) less(i, j int) bool {
	if a[i].at != a[j].at {
		return a[i].at < a[j].at
	}
	return a[i].seq < a[j].seq
}

func (a *agenda) push(e *event) {
	*a = append(*a, e)
	h := *a
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (a *agenda) pop() *event {
	h := *a
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = nil
	h = h[:last]
	*a = h
	for i := 0; ; {
		l, r, small := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, small) {
			small = l
		}
		if r < len(h) && h.less(r, small) {
			small = r
		}
		if small == i {
			return top
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}
