package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
)

// Locks and elections (docs/locks.md). A lock is held by a lease; its
// fencing token is the lock register's version after the acquire, which
// rises with every later hold, by anyone. A holder must stop acting as one
// at its lease's KeepAlive.ValidUntil (less a margin), and should hand the
// token to every resource it writes, which refuses any token below the
// highest it has seen.

var (
	// ErrLocked: the wait for a lock ended with another lease holding it,
	// or with the lock in its lock delay.
	ErrLocked = errors.New("caspaxos/client: locked")
	// ErrNotLockHolder: a release, proclaim or resign by a lease that does
	// not hold the lock (released, or broken once the lease ended).
	ErrNotLockHolder = errors.New("caspaxos/client: the lease does not hold the lock")
	// ErrLockLost: the lock's lease ended, or could not be kept alive,
	// while the lock was held or being acquired.
	ErrLockLost = errors.New("caspaxos/client: the lock's lease ended")
)

// lockAnswerMargin is left between an acquire's wait and its call's
// deadline, for the answer to come back.
const lockAnswerMargin = 200 * time.Millisecond

// DefaultSessionTTL is the TTL of a session's lease when none is asked
// (NewSession, LockOptions.TTL).
const DefaultSessionTTL = 10 * time.Second

// NoLockDelay asks for no lock delay (LockOptions.LockDelay).
const NoLockDelay time.Duration = -1

// LockOptions shape an acquire.
type LockOptions struct {
	// Owner is a tag others see (a host name, a process).
	Owner string
	// TTL is the TTL of the lease Lock grants (default 10s).
	TTL time.Duration
	// LockDelay is how long the lock stays unacquirable after a break of
	// this hold (its lease ended while it held the lock): 0 takes the
	// server's default (15s), NoLockDelay none.
	LockDelay time.Duration
	// Wait bounds one acquire call's wait on the server (default 30s);
	// Lock and Campaign call again until their ctx ends.
	Wait time.Duration
}

// LockState is a lock (or election) as the cluster holds it.
type LockState struct {
	Name string
	// Token is the lock register's version: after an acquire, the hold's
	// fencing token.
	Token uint64
	// Holder is the holding lease (0: free).
	Holder uint64
	Owner  string
	// Value is an election's value.
	Value []byte
	// NotBefore: no acquire before it (a lock delay).
	NotBefore time.Time
}

func lockStateOf(r *caspaxospb.LockResponse) LockState {
	s := LockState{Name: r.GetName(), Token: r.GetToken(), Holder: r.GetHolder(), Owner: r.GetOwner(), Value: r.GetValue()}
	if ms := r.GetNotBeforeUnixMs(); ms != 0 {
		s.NotBefore = time.UnixMilli(ms)
	}
	return s
}

func (c *Client) lockCall(ctx context.Context, fn func(caspaxospb.LockClient) (*caspaxospb.LockResponse, error)) (LockState, error) {
	var out *caspaxospb.LockResponse
	// Every lock call may be retried: an acquire by the holding lease
	// acquires again (a new token), a release or proclaim repeated
	// answers not_lock_holder or sets the same value.
	err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
		var err error
		out, err = fn(caspaxospb.NewLockClient(conn))
		return err
	})
	if err != nil {
		return LockState{}, err
	}
	return lockStateOf(out), nil
}

// AcquireLock acquires name for lease, which must be live, waiting on the
// server up to opts.Wait: ErrLocked once that ends. value is an election's
// proposal (nil for a lock). It returns the lock as acquired: its Token
// is the fencing token.
func (c *Client) AcquireLock(ctx context.Context, name string, lease uint64, value []byte, opts LockOptions) (LockState, error) {
	wait := opts.Wait
	if wait <= 0 {
		wait = kv.DefaultLockWait
	}
	if d, ok := ctx.Deadline(); ok {
		// The server answers locked before the call's deadline, rather
		// than the call ending with no answer.
		wait = max(min(wait, time.Until(d)-lockAnswerMargin), time.Millisecond)
	}
	req := &caspaxospb.LockAcquireRequest{Name: name, Lease: lease, Owner: opts.Owner, WaitMs: wait.Milliseconds(), Value: value}
	switch {
	case opts.LockDelay == NoLockDelay:
		req.LockDelayMs = new(int64)
	case opts.LockDelay > 0:
		ms := opts.LockDelay.Milliseconds()
		req.LockDelayMs = &ms
	}
	return c.lockCall(ctx, func(lc caspaxospb.LockClient) (*caspaxospb.LockResponse, error) {
		return lc.Acquire(ctx, req)
	})
}

// ReleaseLock releases name held by lease in the hold whose fencing
// token is token (0: whatever hold the lease has). With the token, a
// release that arrives late (its answer lost, its proposer still trying)
// never frees a later hold of the same lease.
func (c *Client) ReleaseLock(ctx context.Context, name string, lease, token uint64) error {
	_, err := c.lockCall(ctx, func(lc caspaxospb.LockClient) (*caspaxospb.LockResponse, error) {
		return lc.Release(ctx, &caspaxospb.LockLeaseRequest{Name: name, Lease: lease, Token: token})
	})
	return err
}

// GetLock reads name; with wait > 0, it answers once the lock's token is
// above version, or at the wait's end with its state (a long poll).
func (c *Client) GetLock(ctx context.Context, name string, version uint64, wait time.Duration) (LockState, error) {
	return c.lockCall(ctx, func(lc caspaxospb.LockClient) (*caspaxospb.LockResponse, error) {
		return lc.Get(ctx, &caspaxospb.LockGetRequest{Name: name, Version: version, WaitMs: wait.Milliseconds()})
	})
}

// Session is a lease granted and kept alive for locks and elections.
type Session struct {
	c      *Client
	Lease  Lease
	Keep   *KeepAlive
	cancel context.CancelFunc
}

// NewSession grants a lease of ttl (default 10s) and keeps it alive until
// Close, or until ctx ends.
func (c *Client) NewSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	sent := time.Now()
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &Session{c: c, Lease: l, Keep: c.keepAlive(kctx, l, sent), cancel: cancel}, nil
}

// Valid reports whether the session's lease is still known live: its
// keep-alive runs and ValidUntil is ahead.
func (s *Session) Valid() bool {
	select {
	case <-s.Keep.Done():
		return false
	default:
		return time.Now().Before(s.Keep.ValidUntil())
	}
}

// Close stops the keep-alive and revokes the lease (which ends every hold
// of it at once).
func (s *Session) Close(ctx context.Context) error {
	s.cancel()
	<-s.Keep.Done()
	err := s.c.Revoke(ctx, s.Lease.ID)
	if errors.Is(err, ErrLeaseNotFound) {
		return nil
	}
	return err
}

// acquire calls AcquireLock until it gets the lock, ctx ends, or the
// session's lease is lost.
func (s *Session) acquire(ctx context.Context, name string, value []byte, opts LockOptions) (LockState, error) {
	for {
		if !s.Valid() {
			return LockState{}, fmt.Errorf("%w: lease %x: %v", ErrLockLost, s.Lease.ID, s.Keep.Err())
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < lockAnswerMargin {
			return LockState{}, fmt.Errorf("%w: %w", ErrLocked, context.DeadlineExceeded)
		}
		st, err := s.c.AcquireLock(ctx, name, s.Lease.ID, value, opts)
		switch {
		case err == nil && !s.Valid():
			// The lease ended between the server's check and the acquire:
			// the hold is void. Release it rather than leave it to a break
			// (and its lock delay).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.DefaultRequestTimeout)
			_ = s.c.ReleaseLock(rctx, name, s.Lease.ID, st.Token)
			cancel()
			return LockState{}, fmt.Errorf("%w: lease %x ended as the lock was acquired", ErrLockLost, s.Lease.ID)
		case err == nil:
			return st, nil
		case errors.Is(err, ErrLocked) && ctx.Err() == nil:
			continue
		case ctx.Err() != nil:
			return LockState{}, fmt.Errorf("%w: %w (%v)", ErrLocked, ctx.Err(), err)
		case errors.Is(err, ErrLeaseNotFound):
			return LockState{}, fmt.Errorf("%w: %w", ErrLockLost, err)
		}
		return LockState{}, err
	}
}

// Lock acquires name, waiting until ctx ends, with a lease of its own
// kept alive in the background. It returns the fencing token and unlock,
// which releases the lock and revokes the lease. The holder must stop
// acting as one when its lease is lost: use LockSession for a way to
// know, or hand the token to every resource it writes.
func (c *Client) Lock(ctx context.Context, name string, opts LockOptions) (token uint64, unlock func(context.Context) error, err error) {
	s, err := c.NewSession(ctx, opts.TTL)
	if err != nil {
		return 0, nil, err
	}
	token, err = s.Lock(ctx, name, opts)
	if err != nil {
		// An acquire may have taken effect after the call gave up: release
		// it (a break would impose the lock delay), then end the lease.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.DefaultRequestTimeout)
		defer cancel()
		_ = c.ReleaseLock(cctx, name, s.Lease.ID, 0) // whatever it may hold
		_ = s.Close(cctx)
		return 0, nil, err
	}
	return token, func(ctx context.Context) error {
		err := c.ReleaseLock(ctx, name, s.Lease.ID, token)
		if cerr := s.Close(ctx); err == nil {
			err = cerr
		}
		return err
	}, nil
}

// Lock acquires name with the session's lease, waiting until ctx ends,
// and returns the fencing token.
func (s *Session) Lock(ctx context.Context, name string, opts LockOptions) (uint64, error) {
	st, err := s.acquire(ctx, name, nil, opts)
	return st.Token, err
}

// Election is an election on one lock register, campaigned for with a
// session's lease.
type Election struct {
	s    *Session
	name string
	// token is the hold of the last Campaign won (what Resign ends).
	token atomic.Uint64
}

// Election returns election name, for s's lease.
func (s *Session) Election(name string) *Election { return &Election{s: s, name: name} }

// Campaign waits until ctx ends to lead the election with value; it
// returns the leadership's fencing token.
func (e *Election) Campaign(ctx context.Context, value []byte, opts LockOptions) (uint64, error) {
	st, err := e.s.acquire(ctx, e.name, value, opts)
	if err == nil {
		e.token.Store(st.Token)
	}
	return st.Token, err
}

// Proclaim sets the value of an election the session leads.
func (e *Election) Proclaim(ctx context.Context, value []byte) (uint64, error) {
	st, err := e.s.c.lockCall(ctx, func(lc caspaxospb.LockClient) (*caspaxospb.LockResponse, error) {
		return lc.Proclaim(ctx, &caspaxospb.LockProclaimRequest{Name: e.name, Lease: e.s.Lease.ID, Value: value, Token: e.token.Load()})
	})
	return st.Token, err
}

// Leader reads the election: Holder 0 when nobody leads it.
func (e *Election) Leader(ctx context.Context) (LockState, error) {
	return e.s.c.GetLock(ctx, e.name, 0, 0)
}

// Resign gives up the leadership.
func (e *Election) Resign(ctx context.Context) error {
	return e.s.c.ReleaseLock(ctx, e.name, e.s.Lease.ID, e.token.Load())
}

// Observe yields the election's state, then each change (a long poll on
// the register), until ctx ends; errors are yielded, and the loop goes on
// unless the caller stops.
func (c *Client) Observe(ctx context.Context, name string) iter.Seq2[LockState, error] {
	return func(yield func(LockState, error) bool) {
		var version uint64
		first := true
		for ctx.Err() == nil {
			st, err := c.GetLock(ctx, name, version, kv.DefaultWatchWait)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !yield(LockState{}, err) {
					return
				}
				pause(ctx, time.Second)
				continue
			}
			if st.Token > version || first {
				version, first = st.Token, false
				if !yield(st, nil) {
					return
				}
			}
		}
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
