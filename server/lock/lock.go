// Package lock acquires locks and campaigns in elections on a node
// (COORDINATION.md, "Locks and elections"; kv/lock.go; docs/locks.md).
//
// A lock is one register. An acquirer reads it linearizably; when the
// lock is free (and past its lock delay) it reads its own lease, which
// must be live, and proposes kv.LockAcquire; the version after that
// change is its fencing token. When another lease holds the lock, the
// acquirer reads that lease's register: if the lease is expired, revoked
// or absent, it proposes kv.LockBreak guarded by the lock's version it
// read, so that the involuntary release is a committed change of exactly
// the state it judged; otherwise it watches both registers (the lock's
// and the holder's lease's) from the versions it read, and looks again
// at the first change. It never polls: a waiter wakes when the holder
// releases, or when a reaper commits the holder's lease's expiry. (It also
// wakes at each renewal of the holder's lease, a change of that register,
// and then reads both registers again: two linearizable reads per waiter
// per renewal, every third of the TTL with the Go client.)
//
// The race between the acquirer's read of its own lease and its acquire
// (the lease may expire in between) is harmless: the lock is then held by
// a dead lease, which the next acquirer breaks, and the holder's
// guarantee was never more than its lease's (a holder stops acting at
// its lease's ValidUntil, docs/leases.md), which ended before the expiry
// was committed, hence before any break.
package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// retryRefused is the pause after an acquire refused on a lock this node
// read free: another acquirer won the race, or the proposer's clock was
// still before the lock delay's end.
const retryRefused = 20 * time.Millisecond

// WaitFor clamps an acquire's asked wait: 0 takes kv.DefaultLockWait, more
// than kv.MaxLockWait is cut to it.
func WaitFor(asked time.Duration) time.Duration {
	switch {
	case asked <= 0:
		return kv.DefaultLockWait
	case asked > kv.MaxLockWait:
		return kv.MaxLockWait
	}
	return asked
}

// Deps are what an acquire needs of the node.
type Deps struct {
	// Do runs an operation on the cluster; OpGet is a linearizable read.
	Do func(ctx context.Context, op kv.Op) (protocol.State, error)
	// Wait returns nil once one of from's keys has a state above the
	// version from gives it, or ctx's error once ctx ends (a watch).
	Wait func(ctx context.Context, from map[string]uint64) error
	// Now is the clock of the lock delay's timer (nil: time.Now).
	Now func() time.Time
}

// Request is an acquire or a campaign.
type Request struct {
	Name  string
	Lease uint64
	Owner string
	// Delay is the lock delay a break of this hold applies.
	Delay time.Duration
	// Value is a campaign's proposal (empty for a lock).
	Value []byte
}

// Acquire acquires the lock (or wins the election) for req.Lease, waiting
// up to wait for it. It returns the lock's state after the acquire: its
// version is the fencing token. Every operation runs with ctx; wait bounds
// only the waiting, so that an acquire proposed just before the wait's end
// still has ctx's time to answer. Errors: kv.ErrLocked once the wait ends
// (wrapped, with the holder), kv.ErrLeaseNotFound when req.Lease is not
// live, and those of Do and Wait.
func Acquire(ctx context.Context, d Deps, req Request, wait time.Duration) (protocol.State, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	want := kv.Lock{Holder: req.Lease, Owner: req.Owner, DelayMillis: req.Delay.Milliseconds(), Value: req.Value}
	key := kv.LockKey(req.Name)
	for {
		s, err := d.Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			return protocol.State{}, err
		}
		l, err := kv.LockOf(s)
		if err != nil {
			return protocol.State{}, err
		}
		if l.Holder != 0 && l.Holder != req.Lease {
			if err := breakOrWait(ctx, waitCtx, d, req.Name, s, l.Holder); err != nil {
				return protocol.State{}, err
			}
			continue
		}
		if l.Holder == 0 {
			if until := time.UnixMilli(l.NotBeforeMillis); d.Now().Before(until) {
				if err := sleep(waitCtx, until.Sub(d.Now()), l); err != nil {
					return protocol.State{}, err
				}
				continue
			}
		}
		if err := live(ctx, d, req.Lease); err != nil {
			return protocol.State{}, err
		}
		got, err := d.Do(ctx, kv.LockAcquireOp(req.Name, want))
		if !errors.Is(err, kv.ErrLocked) {
			return got, err
		}
		if err := sleep(waitCtx, retryRefused, l); err != nil {
			return protocol.State{}, err
		}
	}
}

// live reads lease linearizably: kv.ErrLeaseNotFound unless it is live.
func live(ctx context.Context, d Deps, lease uint64) error {
	s, err := d.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(lease)})
	if err != nil {
		return err
	}
	l, err := kv.LeaseOf(s)
	if err != nil {
		return err
	}
	if l.State != kv.LeaseLive {
		return fmt.Errorf("%w: lease %x is %v", kv.ErrLeaseNotFound, lease, l.State)
	}
	return nil
}

// breakOrWait looks at the lease of holder, which held the lock at s: it
// breaks the lock if that lease is dead, and otherwise waits for a change
// of either register.
func breakOrWait(ctx, waitCtx context.Context, d Deps, name string, s protocol.State, holder uint64) error {
	ls, err := d.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(holder)})
	if err != nil {
		return err
	}
	lease, err := kv.LeaseOf(ls)
	if err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		return err
	}
	if err != nil || lease.State != kv.LeaseLive {
		_, err := d.Do(ctx, kv.LockBreakOp(name, holder, s.Version))
		if err == nil || errors.Is(err, kv.ErrVersionMismatch) || errors.Is(err, kv.ErrNotLockHolder) {
			return nil // broken, by this acquirer or another: look again
		}
		return err
	}
	err = d.Wait(waitCtx, map[string]uint64{kv.LockKey(name): s.Version, kv.LeaseKey(holder): ls.Version})
	if err != nil && waitCtx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: held by lease %x", kv.ErrLocked, holder)
	}
	return err
}

// sleep waits d, or answers kv.ErrLocked once the wait ends first.
func sleep(waitCtx context.Context, d time.Duration, l kv.Lock) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-waitCtx.Done():
		if l.Holder != 0 {
			return fmt.Errorf("%w: held by lease %x", kv.ErrLocked, l.Holder)
		}
		return fmt.Errorf("%w: in its lock delay", kv.ErrLocked)
	}
}
