package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// Leases (docs/leases.md). A lease never expires before its TTL has
// passed since its last keep-alive was sent (within the cluster's clock
// skew bound); a holder stops acting as one at KeepAlive.ValidUntil.

var (
	// ErrLeaseNotFound: no such lease, or it expired or was revoked.
	ErrLeaseNotFound = errors.New("caspaxos/client: lease not found, expired or revoked")
	// ErrLeaseExists: a grant named the ID of a live lease.
	ErrLeaseExists = errors.New("caspaxos/client: lease already exists")
)

// Lease is a lease as the cluster holds it.
type Lease struct {
	ID  uint64
	TTL time.Duration
	// State is live, expired or revoked.
	State string
	// Renewed is the time of its last renewal, by the clock of the node
	// that proposed it.
	Renewed time.Time
}

func leaseOf(r *caspaxospb.LeaseResponse) Lease {
	return Lease{ID: r.GetId(), TTL: time.Duration(r.GetTtlMs()) * time.Millisecond, State: r.GetState(), Renewed: time.UnixMilli(r.GetRenewedUnixMs())}
}

func (c *Client) lease(ctx context.Context, retry bool, fn func(caspaxospb.LeaseClient) (*caspaxospb.LeaseResponse, error)) (Lease, error) {
	var out *caspaxospb.LeaseResponse
	err := c.call(ctx, retry, func(conn *grpc.ClientConn) error {
		var err error
		out, err = fn(caspaxospb.NewLeaseClient(conn))
		return err
	})
	if err != nil {
		return Lease{}, err
	}
	return leaseOf(out), nil
}

// Grant grants a lease of ttl (whole milliseconds, 100ms to 24h) with an
// ID the server picks.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (Lease, error) {
	return c.lease(ctx, false, func(lc caspaxospb.LeaseClient) (*caspaxospb.LeaseResponse, error) {
		return lc.LeaseGrant(ctx, &caspaxospb.LeaseGrantRequest{TtlMs: ttl.Milliseconds()})
	})
}

// KeepAliveOnce renews lease id once.
func (c *Client) KeepAliveOnce(ctx context.Context, id uint64) (Lease, error) {
	return c.lease(ctx, true, func(lc caspaxospb.LeaseClient) (*caspaxospb.LeaseResponse, error) {
		return lc.LeaseKeepAlive(ctx, &caspaxospb.LeaseIDRequest{Id: id})
	})
}

// Revoke ends lease id now.
func (c *Client) Revoke(ctx context.Context, id uint64) error {
	_, err := c.lease(ctx, true, func(lc caspaxospb.LeaseClient) (*caspaxospb.LeaseResponse, error) {
		return lc.LeaseRevoke(ctx, &caspaxospb.LeaseIDRequest{Id: id})
	})
	return err
}

// TimeToLive reads lease id: ErrLeaseNotFound unless it is live.
func (c *Client) TimeToLive(ctx context.Context, id uint64) (Lease, error) {
	return c.lease(ctx, true, func(lc caspaxospb.LeaseClient) (*caspaxospb.LeaseResponse, error) {
		return lc.LeaseTimeToLive(ctx, &caspaxospb.LeaseIDRequest{Id: id})
	})
}

// KeepAlive keeps a lease alive in the background: a keep-alive every
// third of its TTL, retried on errors, until ctx ends, the lease is found
// gone, or no keep-alive was acknowledged within a TTL. The keep-alives of
// every helper of a Client travel over one stream per endpoint
// (leasestream.go).
type KeepAlive struct {
	done       chan struct{}
	mu         sync.Mutex
	err        error
	validUntil time.Time
}

// KeepAlive starts keeping lease (as Grant returned it) alive.
func (c *Client) KeepAlive(ctx context.Context, lease Lease) *KeepAlive {
	return c.keepAlive(ctx, lease, time.Now())
}

// keepAlive is KeepAlive of a lease whose grant (or last acknowledged
// renewal) was sent at sent.
func (c *Client) keepAlive(ctx context.Context, lease Lease, sent time.Time) *KeepAlive {
	k := &KeepAlive{done: make(chan struct{}), validUntil: sent.Add(lease.TTL)}
	go k.run(ctx, c, lease)
	return k
}

// Done is closed once the lease is no longer kept alive; Err says why.
func (k *KeepAlive) Done() <-chan struct{} { return k.done }

// Err is why the lease is no longer kept alive (nil while it is).
func (k *KeepAlive) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// ValidUntil is the send time of the last acknowledged keep-alive (at
// first, the call to KeepAlive) plus the TTL: the holder must stop acting
// as one before it, less a margin for its own delays.
func (k *KeepAlive) ValidUntil() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.validUntil
}

func (k *KeepAlive) run(ctx context.Context, c *Client, lease Lease) {
	defer close(k.done)
	every := max(lease.TTL/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			k.end(ctx.Err())
			return
		case <-t.C:
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, every)
		_, err := c.renewStreamed(actx, lease.ID)
		cancel()
		switch {
		case err == nil:
			k.mu.Lock()
			k.validUntil = sent.Add(lease.TTL)
			k.mu.Unlock()
		case errors.Is(err, ErrLeaseNotFound):
			k.end(err)
			return
		case time.Now().After(k.ValidUntil()):
			k.end(fmt.Errorf("caspaxos/client: lease %x: no keep-alive acknowledged within its TTL: %w", lease.ID, err))
			return
		}
	}
}

func (k *KeepAlive) end(err error) {
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
}
