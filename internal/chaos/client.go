package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server"
)

// opTimeout is a client's deadline for one operation: long enough to ride
// out a few lost messages, short enough that a partition ends some
// operations with an unknown outcome.
const opTimeout = 300 * time.Millisecond

// history is the run's operations, as the clients and the GC saw them.
type history struct {
	start time.Time
	gcs   atomic.Uint64 // collection calls
	mu    sync.Mutex
	ops   []sim.HistoryOp
	// counts of outcomes
	ok, refused, unknown, notApplied int
	unexpected                       []string
	// pages are the listings' pages (list.go), listItems the items
	// added to the histories as reads.
	pages     []*listPage
	listItems int
	// watchEvents counts the watchers' deliveries added as reads (watch.go).
	watchEvents int
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op sim.HistoryOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// client issues operations one at a time on random keys and nodes until
// ctx ends. Its choices follow its own generator, seeded from the run's
// seed; what it sees (the versions it compares with) follows the run.
type client struct {
	id   int
	rng  *rand.Rand
	lrng *rand.Rand // when and what it lists: apart, so that its operations stay what rng draws
	c    *cluster
	h    *history
	seen map[string]uint64 // the version it last saw of each key
	n    int
}

func (cl *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		if think := cl.c.plan.Think; think > 0 {
			// A pause drawn from the plan: lets a deleted key lie idle
			// until GC collects it (GC plans), not a wait for anything.
			t := time.NewTimer(time.Duration(1 + cl.rng.Int64N(int64(think))))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if cl.lrng.IntN(100) < listPercent {
			if inc := cl.c.pick(cl.lrng); inc != nil {
				cl.list(inc, cl.lrng)
			}
			continue
		}
		inc := cl.c.pick(cl.rng)
		op := cl.next()
		if inc == nil {
			continue
		}
		cl.do(inc, op)
	}
}

// next draws the next operation: every kind kv has, on a few keys, with
// versions the client saw (now and then off by one) and values that are
// now and then integers, so that Increment both works and is refused.
func (cl *client) next() kv.Op {
	cl.n++
	op := kv.Op{Key: fmt.Sprintf("k%d", cl.rng.IntN(cl.c.plan.Keys))}
	if cold := cl.c.plan.ColdKeys; cold > 0 && cl.rng.IntN(4) == 0 {
		op.Key = fmt.Sprintf("c%d", cl.rng.IntN(cold))
	}
	val := []byte(fmt.Sprintf("c%d.%d", cl.id, cl.n))
	if cl.rng.IntN(3) == 0 {
		val = []byte(fmt.Sprint(cl.rng.IntN(100)))
	}
	version := cl.seen[op.Key]
	if cl.rng.IntN(5) == 0 {
		version++
	}
	// The shares of each kind, as cumulative percentages: GC plans delete
	// and create more, so that keys cycle through collection.
	mix := [5]int{25, 43, 53, 73, 85}
	if cl.c.plan.Kind == GCChurn {
		mix = [5]int{30, 40, 60, 68, 93}
	}
	switch r := cl.rng.IntN(100); {
	case r < mix[0]:
		op.Kind = kv.OpGet
	case r < mix[1]:
		op.Kind, op.Value = kv.OpPut, val
	case r < mix[2]:
		op.Kind, op.Value = kv.OpCreate, val
	case r < mix[3]:
		op.Kind, op.Value, op.Version = kv.OpCompareAndSwap, val, version
	case r < mix[4]:
		op.Kind = kv.OpDelete
		if cl.rng.IntN(2) == 0 {
			op.Version = version
		}
	default:
		op.Kind, op.Delta = kv.OpIncrement, int64(cl.rng.IntN(7)-2)
	}
	return op
}

// do runs op on inc's node and records it.
func (cl *client) do(inc *incarnation, op kv.Op) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	h := sim.HistoryOp{Client: cl.id, Op: op, Call: cl.h.now()}
	st, err := inc.node.Do(ctx, op)
	h.Return = cl.h.now()
	if err == nil {
		inc.hub.Publish(op.Key, st) // as the daemon does: a chosen state reaches the watchers directly
	}
	cl.h.mu.Lock()
	defer cl.h.mu.Unlock()
	switch {
	case errors.Is(err, kv.ErrUnknownOutcome):
		cl.h.unknown++
		if op.Kind == kv.OpGet {
			return // a read has no effect
		}
		h.Unknown, h.Return = true, math.MaxInt64
	case errors.Is(err, kv.ErrNoQuorum), errors.Is(err, server.ErrStopped), errors.Is(err, server.ErrUnreachable):
		cl.h.notApplied++ // not applied, and never will be: no part of the history
		return
	case err == nil:
		cl.h.ok++
		h.State = st
		cl.seen[op.Key] = kv.CurrentVersion(st)
	case isRefusal(err):
		cl.h.refused++
		h.Err, h.State = err, st
		cl.seen[op.Key] = kv.CurrentVersion(st)
	default:
		if len(cl.h.unexpected) < 10 {
			cl.h.unexpected = append(cl.h.unexpected, fmt.Sprintf("client %d: %v on node %d: unexpected error: %v", cl.id, op.Kind, inc.id, err))
		}
		return
	}
	cl.h.ops = append(cl.h.ops, h)
}

func isRefusal(err error) bool {
	for _, e := range []error{kv.ErrNotFound, kv.ErrVersionMismatch, kv.ErrNotAnInteger, kv.ErrOverflow} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
