package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// Value is a key's value and version, and the lease it is attached to (0:
// none).
type Value struct {
	Data    []byte
	Version uint64
	Lease   uint64
}

// WriteOption changes a Put, Create or CompareAndSwap.
type WriteOption func(*caspaxospb.Op)

// WithLease attaches the key to lease id, which must be live
// (ErrLeaseNotFound otherwise): the cluster deletes the key once the
// lease expires or is revoked (docs/leases.md). A write without it
// detaches the key from any lease it had, as in etcd.
func WithLease(id uint64) WriteOption {
	return func(op *caspaxospb.Op) { op.Lease = id }
}

func withOptions(op *caspaxospb.Op, opts []WriteOption) *caspaxospb.Op {
	for _, o := range opts {
		o(op)
	}
	return op
}

// Get reads a key (linearizable). Absent or deleted: ErrNotFound.
func (c *Client) Get(ctx context.Context, key string) (Value, error) {
	r, err := c.do(ctx, true, &caspaxospb.Op{Kind: caspaxospb.Op_GET, Key: []byte(key)})
	if err != nil {
		return Value{}, err
	}
	return Value{Data: r.GetValue(), Version: r.GetVersion(), Lease: r.GetLease()}, nil
}

// Put stores value and returns the new version.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, withOptions(&caspaxospb.Op{Kind: caspaxospb.Op_PUT, Key: []byte(key), Value: value}, opts))
}

// Create stores value only if the key is absent or deleted.
func (c *Client) Create(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, withOptions(&caspaxospb.Op{Kind: caspaxospb.Op_CREATE, Key: []byte(key), Value: value}, opts))
}

// CompareAndSwap stores value only while the key has version (0: absent).
func (c *Client) CompareAndSwap(ctx context.Context, key string, version uint64, value []byte, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, withOptions(&caspaxospb.Op{Kind: caspaxospb.Op_COMPARE_AND_SWAP, Key: []byte(key), Version: version, Value: value}, opts))
}

// Delete deletes a key, only while it has ifVersion unless that is 0, and
// returns the tombstone's version.
func (c *Client) Delete(ctx context.Context, key string, ifVersion uint64) (uint64, error) {
	return c.write(ctx, &caspaxospb.Op{Kind: caspaxospb.Op_DELETE, Key: []byte(key), Version: ifVersion})
}

func (c *Client) write(ctx context.Context, op *caspaxospb.Op) (uint64, error) {
	r, err := c.exactlyOnce(ctx, op)
	return r.GetVersion(), err
}

// Increment adds delta to the key's decimal integer (absent counts as 0)
// and returns the new value and version.
func (c *Client) Increment(ctx context.Context, key string, delta int64) (int64, uint64, error) {
	r, err := c.exactlyOnce(ctx, &caspaxospb.Op{Kind: caspaxospb.Op_INCREMENT, Key: []byte(key), Delta: delta})
	return r.GetInteger(), r.GetVersion(), err
}

// Member is a node of the cluster.
type Member struct {
	Name       string `json:"name"`
	ID         uint64 `json:"id"`
	PeerAddr   string `json:"peer_addr"`
	ClientAddr string `json:"client_addr,omitempty"`
	Reachable  bool   `json:"reachable"`
}

// Members lists the cluster's members as the answering node sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
		r, err := caspaxospb.NewClusterClient(conn).Members(ctx, &caspaxospb.MembersRequest{})
		out = membership(r).Members
		return err
	})
	return out, err
}

// Health reports whether the answering node reaches a quorum, with its reason if not.
func (c *Client) Health(ctx context.Context) (bool, string, error) {
	var healthy bool
	var msg string
	err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
		r, err := caspaxospb.NewClusterClient(conn).Health(ctx, &caspaxospb.HealthRequest{})
		healthy, msg = r.GetHealthy(), r.GetMessage()
		return err
	})
	return healthy, msg, err
}
