package client

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
)

// Exactly-once writes (docs/exactly-once.md). Every write the client
// sends carries a request ID made when it is first issued (a UUID of
// version 7, whose timestamp is that moment); the cluster applies it at
// most once and answers a repeat with its first outcome. So a write that
// ended with an unknown outcome (its attempt's deadline passed, or the
// connection broke while it was in flight) is simply sent again with the
// same ID, to any endpoint, until an attempt gets an answer, while the
// caller's deadline and the idempotency window allow.

// Each attempt but the last gets part of the time left, so that one lost
// to a dead or partitioned node leaves time for another.
const (
	// minAttemptTime is the least time an attempt is given.
	minAttemptTime = 500 * time.Millisecond
	// retryPause bounds the jittered pause before a retry.
	retryPause = 50 * time.Millisecond
	// windowMargin is how far inside the idempotency window the client
	// stops retrying: the cluster's clocks may be ahead of this one.
	windowMargin = 2 * kv.DefaultMaxClockSkew
)

// exactlyOnce runs a write with a request ID, retrying it with the same ID
// after an unknown outcome.
func (c *Client) exactlyOnce(ctx context.Context, op *caspaxospb.Op) (*caspaxospb.OpResult, error) {
	if c.cfg.NoRequestIDs {
		return c.do(ctx, false, op)
	}
	first := time.Now()
	id, err := kv.NewRequestID(first, crand.Reader)
	if err != nil {
		return nil, err
	}
	op.RequestId = id
	var unknown error // the first attempt's unknown outcome, once there is one
	for attempt := 0; ; attempt++ {
		actx, cancel := attemptContext(ctx)
		r, err := c.do(actx, false, op)
		cancel()
		switch {
		case errors.Is(err, ErrUnknownOutcome):
			if unknown == nil {
				unknown = err
			}
		case unknown != nil && refusedAttempt(err):
			// This attempt was refused before it reached the key: it
			// applied nothing, and says nothing of the earlier one,
			// which may have been applied.
		default:
			// Settled: applied (now or by an earlier attempt, whose
			// outcome this one repeats), refused by the key's state, or
			// refused before anything was ever sent.
			return r, err
		}
		pause := time.Duration(rand.Int64N(int64(retryPause)))
		if ctx.Err() != nil || time.Since(first)+pause >= c.cfg.IdempotencyWindow-windowMargin {
			return r, fmt.Errorf("%w (request %s, %d attempts, the last: %v; ask Outcome)", unknown, id, attempt+1, err)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return r, fmt.Errorf("%w (request %s, %d attempts, the last: %v; ask Outcome)", unknown, id, attempt+1, err)
		}
		// An earlier attempt's sender may still read the op it took.
		op = proto.Clone(op).(*caspaxospb.Op)
	}
}

// refusedAttempt reports whether err refused an attempt before it reached
// the key's register (no endpoint, an overloaded node, no quorum, no
// space): nothing of that attempt was applied. It settles a write only if
// no earlier attempt may have been applied.
func refusedAttempt(err error) bool {
	for _, e := range []error{ErrUnavailable, ErrOverloaded, ErrNoQuorum, ErrNoSpace} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// attemptContext gives an attempt half the time ctx has left, at least
// minAttemptTime, and all of it when that is less than twice as much.
func attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, kv.DefaultRequestTimeout)
	}
	left := time.Until(d)
	if left < 2*minAttemptTime {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, max(left/2, minAttemptTime))
}

// Outcome asks whether the write of request ID id on key was applied, and
// at which version. The answer is definitive: it runs as a change of the
// key's register, which fences every attempt still in flight, and an ID
// it does not find is recorded as not applied, so that no late attempt
// can apply it afterwards. An ID older than the idempotency window:
// ErrRequestExpired.
func (c *Client) Outcome(ctx context.Context, key, id string) (applied bool, version uint64, err error) {
	err = c.call(ctx, false, func(conn *grpc.ClientConn) error {
		r, err := caspaxospb.NewKVClient(conn).Outcome(ctx, &caspaxospb.OutcomeRequest{Key: []byte(key), RequestId: id})
		applied, version = r.GetApplied(), r.GetVersion()
		return err
	})
	return applied, version, err
}
