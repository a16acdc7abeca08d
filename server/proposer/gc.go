package proposer

import (
	"context"
	"fmt"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// ProposeGC is deletion GC's step 1 (PROTOCOL.md §9) for each key: the
// identity change accepted by every acceptor of the accept set. Results
// are in the order of keys; a result with Err nil carries the state found
// and the ballot it now sits under on every acceptor. Err is otherwise
// protocol.ErrAborted or protocol.ErrUnknownOutcome (the key was not
// done: harmless, the change was the identity), kv.ErrNoQuorum or
// server.ErrStopped.
func (p *Proposer) ProposeGC(ctx context.Context, keys []string) []protocol.Result {
	return p.identityEach(ctx, keys, func(c *call) { c.gc = true })
}

// identityEach runs an identity call for every key at once, marked by
// mark (a GC write or a catch-up rewrite), and returns the results in the
// order of keys, a driver error in the result's Err.
func (p *Proposer) identityEach(ctx context.Context, keys []string, mark func(*call)) []protocol.Result {
	out := make([]protocol.Result, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &call{
				id:     protocol.ReqID(p.nextID.Add(1)),
				key:    key,
				result: make(chan protocol.Result, 1),
			}
			mark(c)
			r, err := p.roundTrip(ctx, c)
			if err != nil {
				r.Err = err
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out
}

// Forget is deletion GC's step 2 (PROTOCOL.md §9) on this proposer for
// every tombstone: it drops the key's one-round-trip state, moves the
// ballot counter past the tombstone's ballot and raises the age by one per
// tombstone. It returns the new age once it is persisted; the acceptors'
// fences (step 3) use it. With no tombstones it returns the age and
// changes nothing (a probe). server.ErrStopped if the driver stopped first.
func (p *Proposer) Forget(ctx context.Context, tombs []protocol.Tombstone) (uint64, error) {
	return p.forgetCall(ctx, &forgetCall{tombs: tombs, result: make(chan uint64, 1)})
}

// FastForward moves the ballot counter to at least counter and returns once
// the ballot ceiling past it is persisted. A node joining the cluster takes
// the members' counter this way before it proposes anything
// (protocol.JoinFences): deletion GC fast-forwarded every member's proposer
// past each register it removed (step 2), and a joining proposer that
// started from counter 0 would otherwise re-create such a key with a ballot
// and a version below the removed tombstone's (PROTOCOL.md §7, §9).
// protocol.ErrExhausted past MaxCounter; server.ErrStopped if the driver
// stopped first.
func (p *Proposer) FastForward(ctx context.Context, counter uint64) error {
	_, err := p.forgetCall(ctx, &forgetCall{counter: counter, result: make(chan uint64, 1)})
	return err
}

// forgetCall hands fc to the driver and waits until it answers, once the
// age and ceiling fc changed are persisted.
func (p *Proposer) forgetCall(ctx context.Context, fc *forgetCall) (uint64, error) {
	select {
	case p.forgets <- fc:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-p.done:
		return 0, server.ErrStopped
	}
	// The driver answers once the age is persisted: one sync, no network.
	select {
	case age := <-fc.result:
		return age, fc.err
	case <-p.done:
		select {
		case age := <-fc.result:
			return age, fc.err
		default:
			return 0, server.ErrStopped
		}
	}
}

// forget applies fc to the core (run goroutine); the age is persisted and
// fc answered by the next flush.
func (p *Proposer) forget(fc *forgetCall) {
	if fc.counter > 0 {
		if err := p.core.FastForward(fc.counter); err != nil {
			fc.err = fmt.Errorf("caspaxos/proposer: %w", err)
		}
		p.collect() // the new ceiling, persisted by the flush that answers fc
	}
	for _, t := range fc.tombs {
		_, err := p.core.Forget(t.Key, t.Ballot, t.Version)
		p.collect()
		if err != nil {
			fc.err = fmt.Errorf("caspaxos/proposer: forgetting %q: %w", t.Key, err)
			break
		}
	}
	if len(fc.tombs) > 0 {
		p.acc.age = p.core.Age()
	}
	p.acc.forgets = append(p.acc.forgets, fc)
}

// answerForgets answers the Forgets of this flush, after the age was persisted.
func (p *Proposer) answerForgets() {
	for _, fc := range p.acc.forgets {
		fc.result <- p.core.Age()
	}
	clear(p.acc.forgets)
	p.acc.forgets = p.acc.forgets[:0]
}
