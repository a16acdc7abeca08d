package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/transport"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Deletion GC on a networked node (PROTOCOL.md §9; the runner is
// server/gc). Each node runs a runner over its own persisted queue, fed
// by the deletes its proposer commits and by its sweeps. Steps 2 to 4 reach
// the other nodes through the GC service (transport/gc.proto) on their peer
// addresses, over the peer links' connections; the node lists and the gate
// against membership change come from the node's membership.Keeper (GuardGC): a
// round takes the members of the membership in use when it starts, and is
// refused, then retried with the new members, once a change begins.

// GCOptions tunes a node's deletion GC (see gc.Options).
type GCOptions = gc.Options

// deleted is the proposer's Deleted hook: it feeds the runner's queue.
// The runner exists before the node serves anything (startGC).
func (d *Daemon) deleted(key string, version uint64) {
	if gc := d.gc.Load(); gc != nil {
		gc.Enqueue(key, version)
	}
}

// startGC builds the node's runner (not started: Start does that once the
// node serves its peers).
func (d *Daemon) startGC() error {
	o := d.cfg.GC
	if o.Disabled {
		return nil
	}
	gc, err := gc.New(o.Config(d.id), d.store, d.node, d.members.GuardGC(&gcPeers{d: d}), d.log)
	if err != nil {
		return fmt.Errorf("caspaxos/daemon: deletion GC: %w", err)
	}
	d.gc.Store(gc)
	return nil
}

// gcPeers is the runner's gc.Peers: this node directly, the others
// over their GC service. (GuardGC gives the runner the node lists.)
type gcPeers struct{ d *Daemon }

var errNotMember = errors.New("caspaxos/daemon: not a member yet: deletion GC waits")

func (p *gcPeers) Proposers() []protocol.NodeID { return p.d.members.Membership().IDs() }

func (p *gcPeers) Acceptors() []protocol.NodeID { return p.d.members.Membership().IDs() }

// client returns the GC service of node id, not this node.
func (p *gcPeers) client(id protocol.NodeID) (peerpb.GCClient, error) {
	c, err := p.d.tr.GC(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", server.ErrUnreachable, err)
	}
	return c, nil
}

// member fails while this node waits to be added: a joining node's runner
// has no cluster to collect in.
func (p *gcPeers) member() error {
	if p.d.members.Membership().Version() == 0 {
		return errNotMember
	}
	return nil
}

func (p *gcPeers) Forget(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) (uint64, error) {
	if err := p.member(); err != nil {
		return 0, err
	}
	if id == p.d.id {
		return p.d.node.Forget(ctx, tombs)
	}
	c, err := p.client(id)
	if err != nil {
		return 0, err
	}
	r, err := c.Forget(ctx, &peerpb.ForgetRequest{Tombstones: tombstonesToWire(tombs)})
	return r.GetAge(), err
}

func (p *gcPeers) Fence(ctx context.Context, id protocol.NodeID, ages map[protocol.NodeID]uint64) error {
	if err := p.member(); err != nil {
		return err
	}
	if id == p.d.id {
		return p.d.node.Fence(ages)
	}
	c, err := p.client(id)
	if err != nil {
		return err
	}
	_, err = c.Fence(ctx, &peerpb.FenceRequest{Ages: transport.AgesToWire(ages)})
	return err
}

func (p *gcPeers) Collect(ctx context.Context, id protocol.NodeID, tombs []protocol.Tombstone) ([]bool, error) {
	if err := p.member(); err != nil {
		return nil, err
	}
	if id == p.d.id {
		return p.d.node.Collect(tombs)
	}
	c, err := p.client(id)
	if err != nil {
		return nil, err
	}
	r, err := c.Collect(ctx, &peerpb.CollectRequest{Tombstones: tombstonesToWire(tombs)})
	if err != nil {
		return nil, err
	}
	if len(r.GetDone()) != len(tombs) {
		return nil, fmt.Errorf("caspaxos/daemon: node %d answered %d results for %d tombstones", id, len(r.GetDone()), len(tombs))
	}
	return r.GetDone(), nil
}

// gcServer serves the GC service on the peer address: the steps on this
// node's proposer and acceptor.
type gcServer struct {
	peerpb.UnimplementedGCServer
	d *Daemon
}

func (s gcServer) Forget(ctx context.Context, r *peerpb.ForgetRequest) (*peerpb.ForgetReply, error) {
	age, err := s.d.node.Forget(ctx, tombstonesFromWire(r.GetTombstones()))
	switch {
	case errors.Is(err, protocol.ErrExhausted):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &peerpb.ForgetReply{Age: age}, nil
}

func (s gcServer) Fence(_ context.Context, r *peerpb.FenceRequest) (*peerpb.FenceReply, error) {
	err := s.d.node.Fence(transport.AgesFromWire(r.GetAges()))
	switch {
	case errors.Is(err, acceptor.ErrFenceTooHigh):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &peerpb.FenceReply{}, nil
}

func (s gcServer) Collect(_ context.Context, r *peerpb.CollectRequest) (*peerpb.CollectReply, error) {
	tombs := tombstonesFromWire(r.GetTombstones())
	seen := make(map[string]bool, len(tombs))
	for _, t := range tombs {
		if seen[t.Key] {
			return nil, status.Errorf(codes.InvalidArgument, "key %q twice", t.Key)
		}
		seen[t.Key] = true
	}
	done, err := s.d.node.Collect(tombs)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &peerpb.CollectReply{Done: done}, nil
}

func tombstonesToWire(tombs []protocol.Tombstone) []*peerpb.Tombstone {
	out := make([]*peerpb.Tombstone, len(tombs))
	for i, t := range tombs {
		out[i] = &peerpb.Tombstone{Key: []byte(t.Key), Ballot: transport.BallotToWire(t.Ballot), Version: t.Version,
			Promise: transport.BallotToWire(t.Promise)}
	}
	return out
}

func tombstonesFromWire(tombs []*peerpb.Tombstone) []protocol.Tombstone {
	out := make([]protocol.Tombstone, len(tombs))
	for i, t := range tombs {
		out[i] = protocol.Tombstone{Key: string(t.GetKey()), Ballot: transport.BallotFromWire(t.GetBallot()), Version: t.GetVersion(),
			Promise: transport.BallotFromWire(t.GetPromise())}
	}
	return out
}

// gcCollector reads the runner's counters and queue at scrape time.
type gcCollector struct{ d *Daemon }

// maxQueuedCount bounds the queue items a scrape counts.
const maxQueuedCount = 1 << 20

var (
	gcQueuedDesc = prometheus.NewDesc("caspaxos_gc_queued_keys",
		"Items in this node's persisted deletion GC queue (counted up to 1048576).", nil, nil)
	gcTombstonesDesc = prometheus.NewDesc("caspaxos_gc_tombstones",
		"Tombstones the last complete GC sweep found in this node's store.", nil, nil)
	gcCounters = []struct {
		desc  *prometheus.Desc
		value func(gc.Stats) uint64
	}{
		{prometheus.NewDesc("caspaxos_gc_rounds_total", "Deletion GC rounds run.", nil, nil),
			func(s gc.Stats) uint64 { return s.Rounds }},
		{prometheus.NewDesc("caspaxos_gc_rounds_failed_total", "GC rounds that left keys queued (a node unreachable, a key busy); retried.", nil, nil),
			func(s gc.Stats) uint64 { return s.Failed }},
		{prometheus.NewDesc("caspaxos_gc_collected_total", "Keys GC finished: removed from every acceptor, or found live again.", nil, nil),
			func(s gc.Stats) uint64 { return s.Collected }},
		{prometheus.NewDesc("caspaxos_gc_sweeps_total", "Complete GC sweeps of this node's store.", nil, nil),
			func(s gc.Stats) uint64 { return s.Sweeps }},
		{prometheus.NewDesc("caspaxos_gc_swept_total", "Tombstones homed on this node the sweeps queued.", nil, nil),
			func(s gc.Stats) uint64 { return s.Swept }},
		{prometheus.NewDesc("caspaxos_gc_adopted_total", "Tombstones of other homes queued after the orphan delay.", nil, nil),
			func(s gc.Stats) uint64 { return s.Adopted }},
		{prometheus.NewDesc("caspaxos_gc_dropped_total", "Deletes not queued (feed full or queue write failed); the sweep finds them.", nil, nil),
			func(s gc.Stats) uint64 { return s.Dropped }},
	}
)

func (c *gcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- gcQueuedDesc
	ch <- gcTombstonesDesc
	for _, k := range gcCounters {
		ch <- k.desc
	}
}

func (c *gcCollector) Collect(ch chan<- prometheus.Metric) {
	gc := c.d.gc.Load()
	if gc == nil {
		return
	}
	if n, err := gc.Queued(maxQueuedCount); err == nil {
		ch <- prometheus.MustNewConstMetric(gcQueuedDesc, prometheus.GaugeValue, float64(n))
	}
	s := gc.Stats()
	ch <- prometheus.MustNewConstMetric(gcTombstonesDesc, prometheus.GaugeValue, float64(s.Tombstones))
	for _, k := range gcCounters {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.value(s)))
	}
}
