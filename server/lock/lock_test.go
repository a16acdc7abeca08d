package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
	"github.com/caspaxos/caspaxos/server/lock"
)

// deps runs an acquire on the map-backed backend, its watches included.
func deps(b *clientapitest.Backend) lock.Deps {
	return lock.Deps{Do: b.Do, Wait: func(ctx context.Context, from map[string]uint64) error {
		req := kv.WatchRequest{From: from}
		for k := range from {
			req.Keys = append(req.Keys, k)
		}
		w, err := b.Watch(ctx, req)
		if err != nil {
			return err
		}
		defer w.Close()
		_, err = w.Next(ctx)
		return err
	}}
}

func grant(t *testing.T, b *clientapitest.Backend, id uint64) {
	t.Helper()
	if _, err := b.Do(context.Background(), kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: 60_000}); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, b *clientapitest.Backend, op kv.Op) {
	t.Helper()
	if _, err := b.Do(context.Background(), op); err != nil {
		t.Fatalf("%v: %v", op.Kind, err)
	}
}

// TestAcquire: each way a waiter gets the lock, or does not.
func TestAcquire(t *testing.T) {
	ctx := context.Background()
	const holder, waiter = 1, 2
	for _, tc := range []struct {
		name string
		// then runs while the waiter waits (nil: nothing happens).
		then    func(t *testing.T, b *clientapitest.Backend)
		wait    time.Duration
		wantErr error
		// minWait: the acquire may not answer before it (the lock delay).
		minWait time.Duration
	}{
		{name: "the holder releases", then: func(t *testing.T, b *clientapitest.Backend) { do(t, b, kv.LockReleaseOp("l", holder, 0)) }, wait: 10 * time.Second},
		{name: "the holder's lease ends: broken after the lock delay", then: func(t *testing.T, b *clientapitest.Backend) {
			do(t, b, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(holder)})
		}, wait: 10 * time.Second, minWait: 100 * time.Millisecond},
		{name: "the holder keeps it", wait: 50 * time.Millisecond, wantErr: kv.ErrLocked},
		{name: "the waiter's own lease ends", then: func(t *testing.T, b *clientapitest.Backend) {
			do(t, b, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(waiter)})
			do(t, b, kv.LockReleaseOp("l", holder, 0))
		}, wait: 10 * time.Second, wantErr: kv.ErrLeaseNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := clientapitest.New()
			grant(t, b, holder)
			grant(t, b, waiter)
			first, err := lock.Acquire(ctx, deps(b), lock.Request{Name: "l", Lease: holder, Delay: 100 * time.Millisecond}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			done := make(chan error, 1)
			var token uint64
			go func() {
				s, err := lock.Acquire(ctx, deps(b), lock.Request{Name: "l", Lease: waiter, Owner: "w"}, tc.wait)
				token = s.Version
				done <- err
			}()
			if tc.then != nil {
				tc.then(t, b)
			}
			err = <-done
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || token <= first.Version {
				t.Fatalf("token %d after the first holder's %d: %v", token, first.Version, err)
			}
			// not_before is in whole milliseconds of the proposer's
			// clock: up to 1ms before start + the delay.
			if took := time.Since(start); took < tc.minWait-time.Millisecond {
				t.Fatalf("acquired after %v, within the lock delay %v", took, tc.minWait)
			}
			s, _ := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey("l")})
			if l, err := kv.LockOf(s); err != nil || l.Holder != waiter || l.Owner != "w" || s.Version != token {
				t.Fatalf("lock %+v at %d, %v; want held by %d at the token %d", l, s.Version, err, waiter, token)
			}
		})
	}
}

// TestAcquireDeadLease: no acquire by a lease that is not live.
func TestAcquireDeadLease(t *testing.T) {
	b := clientapitest.New()
	if _, err := lock.Acquire(context.Background(), deps(b), lock.Request{Name: "l", Lease: 9}, time.Second); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("acquire by an absent lease: %v", err)
	}
}
