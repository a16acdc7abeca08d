package proposer

import (
	"container/heap"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// timerQueue holds the proposer's pending protocol timers, earliest first.
// Timers are never cancelled (protocol.Timer: stale ones are ignored by
// Fire), so the queue only grows by Ready.Timers and shrinks as they fire.
type timerQueue []dueTimer

type dueTimer struct {
	at time.Time
	t  protocol.Timer
}

func (q timerQueue) Len() int           { return len(q) }
func (q timerQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q timerQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *timerQueue) Push(x any)        { *q = append(*q, x.(dueTimer)) }
func (q *timerQueue) Pop() any {
	old := *q
	n := len(old) - 1
	x := old[n]
	old[n] = dueTimer{}
	*q = old[:n]
	return x
}

func (q *timerQueue) add(at time.Time, t protocol.Timer) { heap.Push(q, dueTimer{at: at, t: t}) }

// popDue removes and returns the timers due at now.
func (q *timerQueue) popDue(now time.Time, out []protocol.Timer) []protocol.Timer {
	for q.Len() > 0 && !(*q)[0].at.After(now) {
		out = append(out, heap.Pop(q).(dueTimer).t)
	}
	return out
}

// next returns when the earliest timer is due; ok is false if none is.
func (q timerQueue) next() (at time.Time, ok bool) {
	if len(q) == 0 {
		return time.Time{}, false
	}
	return q[0].at, true
}
