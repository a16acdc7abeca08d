package sim

import (
	"fmt"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// traceLen is how many recent events a failure report shows.
const traceLen = 80

// trace hashes every event of a run (an FNV-style hash over the event's
// fields, in order) and keeps the last traceLen of them for failure reports. Two runs
// of one seed must end with the same hash.
type trace struct {
	hash uint64
	ring [traceLen]traceEntry
	n    int // entries recorded so far
}

// traceEntry is an event as it ran, or a note about a client operation.
type traceEntry struct {
	at   time.Duration
	ev   event
	note string // set for notes; ev is then zero
	op   *op    // the operation a note is about
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func newTrace() trace { return trace{hash: fnvOffset} }

// word mixes one 64-bit word into the hash (FNV-1a's step on whole words,
// with a fold so that high bits reach low ones).
func (t *trace) word(w uint64) {
	t.hash ^= w
	t.hash *= fnvPrime
	t.hash ^= t.hash >> 29
}

func (t *trace) str(s string) {
	for i := 0; i < len(s); i++ {
		t.hash ^= uint64(s[i])
		t.hash *= fnvPrime
	}
	t.word(uint64(len(s)))
}

func (t *trace) ballot(b protocol.Ballot) {
	t.word(b.Counter)
	t.word(uint64(b.Proposer))
}

func (t *trace) state(s protocol.State) {
	t.str(string(s.Value))
	t.word(s.Version<<1 | boolBit(s.Deleted))
}

func (t *trace) message(m protocol.Message) {
	t.word(uint64(m.Kind) | uint64(m.From)<<8 | uint64(m.To)<<16)
	t.str(m.Key)
	t.ballot(m.Ballot)
	t.ballot(m.Next)
	t.ballot(m.Accepted)
	t.ballot(m.Seen)
	t.state(m.State)
}

// record hashes ev and remembers it.
func (t *trace) record(ev *event) {
	t.word(uint64(ev.at))
	t.word(uint64(ev.kind) | uint64(ev.node)<<8 | uint64(ev.fault)<<16 | uint64(ev.client)<<24)
	t.word(ev.inc)
	t.word(uint64(ev.req))
	switch ev.kind {
	case evDeliver:
		t.message(ev.msg)
	case evTimer:
		t.word(uint64(ev.timer.Kind) | uint64(ev.timer.Retry)<<8)
		t.str(ev.timer.Key)
		t.ballot(ev.timer.Ballot)
	case evScan, evScanReply:
		t.word(uint64(ev.scan.page.id)<<32 | uint64(ev.scan.round))
		t.word(uint64(ev.scan.from)<<8 | uint64(ev.scan.to))
		t.str(ev.scan.r.Start)
		t.word(uint64(len(ev.scan.reply.Entries)))
	case evWatch:
		t.word(uint64(ev.watch.kind) | uint64(ev.watch.from)<<8 | uint64(ev.watch.to)<<16 | ev.watch.gen<<24)
		t.str(ev.watch.key)
		t.state(ev.watch.state)
	}
	t.keep(traceEntry{at: ev.at, ev: *ev})
}

// noteOp hashes and remembers something that happened to a client
// operation (issued, answered, lost).
func (t *trace) noteOp(at time.Duration, what string, o *op) {
	t.str(what)
	t.word(uint64(o.id))
	t.word(uint64(o.status))
	t.word(uint64(o.out.outcome))
	t.str(o.out.state.value)
	t.word(o.out.state.version)
	t.keep(traceEntry{at: at, note: what, op: o})
}

// note hashes and remembers a rare happening described by text (a fault).
func (t *trace) note(at time.Duration, text string) {
	t.str(text)
	t.keep(traceEntry{at: at, note: text})
}

func (t *trace) keep(e traceEntry) {
	t.ring[t.n%traceLen] = e
	t.n++
}

// tail returns the remembered entries, oldest first, formatted.
func (t *trace) tail() []string {
	first := max(0, t.n-traceLen)
	lines := make([]string, 0, t.n-first)
	for i := first; i < t.n; i++ {
		lines = append(lines, t.ring[i%traceLen].String())
	}
	return lines
}

func (e traceEntry) String() string {
	if e.op == nil && e.note != "" {
		return fmt.Sprintf("%12v  %s", e.at, e.note)
	}
	if e.op != nil {
		return fmt.Sprintf("%12v  client %d %s: req %d %v at node %d -> %s", e.at, e.op.client, e.note, e.op.id, e.op.in, e.op.node+1, e.op.describe())
	}
	return fmt.Sprintf("%12v  %s", e.at, e.ev.String())
}

var timerNames = [...]string{protocol.TimerAttempt: "attempt", protocol.TimerBackoff: "backoff", protocol.TimerRead: "read",
	protocol.TimerWiden: "widen", protocol.TimerGather: "gather"}

func timerName(k protocol.TimerKind) string {
	if int(k) < len(timerNames) && timerNames[k] != "" {
		return timerNames[k]
	}
	return fmt.Sprintf("timer-kind-%d", k)
}

func (e event) String() string {
	switch e.kind {
	case evDeliver:
		return fmt.Sprintf("deliver %v", e.msg)
	case evSyncDone:
		return fmt.Sprintf("node %d sync done", e.node+1)
	case evTimer:
		return fmt.Sprintf("node %d %s timer %q b=%s retry=%d", e.node+1, timerName(e.timer.Kind), e.timer.Key, e.timer.Ballot, e.timer.Retry)
	case evClientNext:
		return fmt.Sprintf("client %d ready", e.client)
	case evDeadline:
		return fmt.Sprintf("client %d deadline for req %d", e.client, e.req)
	case evFaultStart:
		return fmt.Sprintf("fault %s starts", e.fault)
	case evFaultEnd:
		return fmt.Sprintf("fault %s ends (node %d)", e.fault, e.node+1)
	case evScan:
		return fmt.Sprintf("node %d scans %q from %q (limit %d) for page %d round %d", e.scan.to+1, e.scan.r.Prefix, e.scan.r.Start, e.scan.r.Limit, e.scan.page.id, e.scan.round)
	case evScanReply:
		return fmt.Sprintf("node %d gets node %d's scan for page %d round %d: %d entries, more %v", e.scan.from+1, e.scan.to+1, e.scan.page.id, e.scan.round, len(e.scan.reply.Entries), e.scan.reply.More)
	case evListNext, evListDeadline, evListStep:
		return fmt.Sprintf("lister %d %s (page %d)", e.client, e.kind, e.req)
	case evWatch:
		return e.watch.String()
	}
	return e.kind.String()
}
