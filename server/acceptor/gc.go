package acceptor

import (
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/storage"
)

// ErrFenceTooHigh: an age fence was refused because it is past
// protocol.MaxAge, or far above any age its proposer has shown this
// acceptor (Config.MaxFenceStep); nothing was changed.
var ErrFenceTooHigh = errors.New("caspaxos/acceptor: age fence refused: too far above the proposer's age")

// Fence is deletion GC's step 3 on this acceptor (PROTOCOL.md §9): from
// now on it refuses prepares and accepts of proposer id carrying an age
// below ages[id]. It persists the fences it raises before it returns, and
// keeps the highest it was ever given. An empty ages changes nothing (a
// probe: it fails only if the acceptor stopped).
//
// It refuses the whole call with ErrFenceTooHigh, changing nothing, if a
// fence is past protocol.MaxAge or more than MaxFenceStep above the highest
// age of that proposer this acceptor knows (its fence here, the ages its
// requests carried since the start). A fence is otherwise a promise nobody
// checks: one call with age 2^64-1 refused every write of its proposer for
// good, restarts included.
//
// Safety and liveness of the bound. Refusing a fence only fails step 3: the
// round stops before step 4 removes anything, its items stay queued, and a
// later round starts again from step 1, so §9's argument is untouched.
// Every honest fence is the age its proposer answered from step 2, and the
// proposer's age rises by one per tombstone it forgets, so an honest fence
// is above what this acceptor knows of it only by the tombstones forgotten
// since the proposer last sent a request here or a round last fenced it
// here; the proposer's own GC runner sends requests here every round (step
// 1), so a lag of MaxFenceStep needs that many tombstones forgotten while
// neither happened. A fence within the bound but above the proposer's age
// (not from its Forget) is harmless: the proposer learns it from the first
// refusal and takes that age (protocol.Proposer.Step), which is safe for the
// reason given there. So a bad fence either is refused or costs its
// proposer one refused attempt, and MaxAge is out of reach for all but
// 2^42 bad calls in a row.
func (a *Acceptor) Fence(ages map[protocol.NodeID]uint64) error {
	return a.fence(ages, true)
}

// CopyFences raises this acceptor's fences to ages, as Fence does but with
// no bound other than protocol.MaxAge: for the fences a node joining the
// membership copies from a member's store (PROTOCOL.md §8 with §9), which
// may be any distance above what the new acceptor has seen.
func (a *Acceptor) CopyFences(ages map[protocol.NodeID]uint64) error {
	return a.fence(ages, false)
}

func (a *Acceptor) fence(ages map[protocol.NodeID]uint64, bounded bool) error {
	if err := a.enterGC(); err != nil {
		return err
	}
	defer a.wg.Done()
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	raise := make(map[protocol.NodeID]uint64)
	a.mu.Lock()
	for id, age := range ages {
		if age <= a.fences[id] {
			continue
		}
		if age > protocol.MaxAge {
			a.mu.Unlock()
			return fmt.Errorf("%w: fence %d for proposer %d is past the highest age %d", ErrFenceTooHigh, age, id, protocol.MaxAge)
		}
		if known := max(a.fences[id], a.seen[id]); bounded && age-known > a.maxFenceStep {
			a.mu.Unlock()
			return fmt.Errorf("%w: fence %d for proposer %d is more than %d above its highest age known here, %d", ErrFenceTooHigh, age, id, a.maxFenceStep, known)
		}
		raise[id] = age
	}
	a.mu.Unlock()
	if len(raise) == 0 {
		return nil
	}
	if err := a.store.SetFences(raise); err != nil {
		a.fail(err)
		return fmt.Errorf("caspaxos/acceptor: persisting age fences: %w", err)
	}
	a.mu.Lock()
	for id, age := range raise {
		a.fences[id] = age
	}
	a.mu.Unlock()
	return nil
}

// enterGC admits a GC operation, which Stop then waits for.
func (a *Acceptor) enterGC() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failure != nil {
		return a.failure
	}
	if a.stopped {
		return server.ErrStopped
	}
	a.wg.Add(1)
	return nil
}

// Collect is deletion GC's step 4 on this acceptor (PROTOCOL.md §9): it
// removes the register of each tombstone's key if the register still holds
// a state with no value accepted under the tombstone's ballot and no promise
// above the tombstone's Promise, in one
// durable write. It reports per tombstone whether the step is done here:
// the register was removed, holds a live value again, or holds nothing. A
// register that still holds no value but was written or promised since the
// round's GC write is not done (a later round, with a fresh GC write, takes
// it), nor is one with a write still in flight. Keys must be distinct.
//
// It goes through the service's slots, as a received batch does (see the
// design comment in acceptor.go): it pins every key, so that the
// registers it compares are the newest stepped, decides under mu, removes
// outside it, and then empties the slots of the removed registers unless a
// batch stepped them meanwhile (whose write then lands after the removal:
// Store orders RemoveMany and Apply, and the removal compared the register
// that batch stepped from). Steps never wait for Collect.
func (a *Acceptor) Collect(tombs []protocol.Tombstone) ([]bool, error) {
	if err := a.enterGC(); err != nil {
		return nil, err
	}
	defer a.wg.Done()
	b := &batch{msgs: make([]protocol.Message, len(tombs))}
	for i, t := range tombs {
		b.msgs[i] = protocol.Message{Key: t.Key}
	}
	a.pin(b)
	defer a.unpin(b)
	done := make([]bool, len(tombs))
	expect, which := a.removable(b, tombs, done)
	if len(expect) == 0 {
		return done, nil
	}
	removed, err := a.store.RemoveMany(expect)
	if err != nil {
		a.fail(err)
		return nil, fmt.Errorf("caspaxos/acceptor: removing collected registers: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for j, ok := range removed {
		if !ok {
			continue // changed since: a later try decides again
		}
		i := which[j]
		done[i] = true
		a.stats.collected.Add(1)
		if s := b.slots[i]; s.write == nil && s.reg.Equal(expect[j].Register) {
			s.reg = protocol.Register{}
		}
	}
	return done, nil
}

// removable decides, under mu, which of b's registers Collect removes: it
// returns them with their index in tombs, and marks done the tombstones
// whose register holds something else.
func (a *Acceptor) removable(b *batch, tombs []protocol.Tombstone, done []bool) (expect []storage.Entry, which []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, t := range tombs {
		s := b.slots[i]
		switch {
		case s.loadErr != nil || a.failure != nil:
		case s.write != nil && !s.write.finished():
			// A write in flight: the store may not hold s.reg yet.
		default:
			switch protocol.Collectible(t, s.reg) {
			case protocol.CollectDone:
				done[i] = true // live again, or nothing there
			case protocol.CollectLater:
				// Not this round's to remove (a promise may belong to a
				// proposer that read the tombstone and may yet accept on
				// top of it); not done either: the item stays queued, and
				// a later round's fresh GC write collects it.
			case protocol.CollectRemove:
				s.write = nil // finished: the store holds s.reg
				expect = append(expect, storage.Entry{Key: t.Key, Register: s.reg})
				which = append(which, i)
			}
		}
	}
	return expect, which
}
