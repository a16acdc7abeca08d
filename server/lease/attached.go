package lease

import (
	"context"
	"errors"
	"math"
	"sync"

	"github.com/caspaxos/caspaxos/kv"
)

// attached is one entry of a store's attached index: key is attached to
// lease (storage.AttachedStore).
type attached struct {
	lease uint64
	key   string
}

// scanAttached returns up to limit entries of the index after (lease, key).
func (r *Reaper) scanAttached(after attached, limit int) ([]attached, error) {
	var page []attached
	err := r.scan.ScanAttached(after.lease, after.key, func(lease uint64, key string) bool {
		page = append(page, attached{lease, key})
		return len(page) < limit
	})
	return page, err
}

// attachedPage is the number of index entries a sweep reads at once.
const attachedPage = 256

// sweep deletes the keys attached to the leases that ended, in the order
// of the store's attached index, up to MaxPerScan deletes. It reads a
// lease linearizably if its local copy may have ended (mayHaveEnded), or
// to recheck it (RecheckPerSweep).
func (r *Reaper) sweep() {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	budget, rechecks, from := r.cfg.MaxPerScan, r.cfg.RecheckPerSweep, r.recheckAfter
	var after attached
	for budget > 0 && !r.stopped() {
		page, err := r.scanAttached(after, 1)
		if err != nil {
			r.log.Warn("attached index scan failed", "err", err)
			return
		}
		if len(page) == 0 {
			if rechecks > 0 {
				r.recheckAfter = 0 // the next sweep starts over
			}
			return
		}
		id := page[0].lease
		read := r.mayHaveEnded(id)
		if !read && rechecks > 0 && id > from {
			read, rechecks, r.recheckAfter = true, rechecks-1, id
		}
		if read && r.ended(id) {
			budget -= r.deleteAttached(id, budget)
		}
		if id == math.MaxUint64 {
			return
		}
		after = attached{lease: id + 1} // the next lease
	}
}

// SweepLease deletes the keys attached to lease id now if it ended (a
// node calls it once it revoked id); the periodic sweep does it otherwise.
func (r *Reaper) SweepLease(id uint64) {
	r.sweepMu.Lock()
	defer r.sweepMu.Unlock()
	if r.ended(id) {
		r.deleteAttached(id, r.cfg.MaxPerScan)
	}
}

func (r *Reaper) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// mayHaveEnded is the sweep's filter on the local copy of lease id's
// register: false only when that copy is live and this node's clock does
// not yet let it expire (the expiry scan proposes those, and a sweep after
// the expiry commits sees it).
func (r *Reaper) mayHaveEnded(id uint64) bool {
	reg, err := r.scan.Get(kv.LeaseKey(id))
	if err != nil {
		return true
	}
	if reg.State.Flags&kv.LeaseKeysKept != 0 {
		// Its keys are its front end's (a grant sets the flag and every
		// later change keeps it, so every copy of the register has it):
		// never read it again for them.
		return false
	}
	l, err := kv.LeaseOf(reg.State)
	if err != nil || l.State != kv.LeaseLive {
		return true
	}
	return kv.LeaseExpirable(l, r.now().UnixMilli(), r.cfg.MaxClockSkew.Milliseconds())
}

// ended reads lease id's register linearizably: whether it is expired,
// revoked or absent. A read that fails says no (the next sweep retries).
func (r *Reaper) ended(id uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
	defer cancel()
	s, err := r.do.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(id)})
	if err != nil {
		r.log.Debug("lease read for a sweep failed", "lease", id, "err", err)
		return false
	}
	err = kv.LeaseIsLive(s)
	if errors.Is(err, kv.ErrBadLease) {
		r.log.Warn("lease register does not decode; its keys are kept", "lease", id, "err", err)
		return false
	}
	if err == nil {
		return false
	}
	if s.Flags&kv.LeaseKeysKept != 0 {
		return false // its front end settles its keys (Consul's sessions)
	}
	r.mu.Lock()
	r.stats.Ended++
	r.mu.Unlock()
	return true
}

// deleteAttached proposes the delete of every key the index attaches to
// lease id, up to budget, Parallel at a time; it returns how many it
// proposed.
func (r *Reaper) deleteAttached(id uint64, budget int) int {
	sem := make(chan struct{}, r.cfg.Parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	n := 0
	after := attached{lease: id}
	for n < budget && !r.stopped() {
		page, err := r.scanAttached(after, min(attachedPage, budget-n))
		if err != nil {
			r.log.Warn("attached index scan failed", "err", err)
			return n
		}
		for _, a := range page {
			if a.lease != id {
				return n
			}
			n++
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				r.deleteKey(a)
			}()
		}
		if len(page) == 0 {
			return n
		}
		after = page[len(page)-1]
	}
	return n
}

// deleteKey proposes the delete of one attached key.
func (r *Reaper) deleteKey(a attached) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
	defer cancel()
	op := kv.Op{Kind: kv.OpDeleteAttached, Key: a.key, Lease: a.lease}
	if r.unguarded {
		op = kv.Op{Kind: kv.OpDelete, Key: a.key}
	}
	r.mu.Lock()
	r.stats.Detaches++
	r.mu.Unlock()
	s, err := r.do.Do(ctx, op)
	switch {
	case err == nil && !s.Exists():
		r.mu.Lock()
		r.stats.Detached++
		r.mu.Unlock()
	case err != nil && !errors.Is(err, kv.ErrNotFound):
		r.log.Debug("delete of an attached key not settled", "key", a.key, "lease", a.lease, "err", err)
	}
}
