package daemon

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/peerapi"
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
	gc, err := gc.New(o.Config(d.id), d.store, d.node, d.members.GuardGC(d.gcPeers()), d.log)
	if err != nil {
		return fmt.Errorf("caspaxos/daemon: deletion GC: %w", err)
	}
	d.gc.Store(gc)
	return nil
}

var errNotMember = errors.New("caspaxos/daemon: not a member yet: deletion GC waits")

// gcPeers is the runner's gc.Peers: this node directly, the others over
// their GC service on the peer links' connections. (GuardGC gives the
// runner the node lists.)
func (d *Daemon) gcPeers() *peerapi.GCPeers {
	return &peerapi.GCPeers{
		Self:    d.id,
		Local:   d.node,
		Members: func() []protocol.NodeID { return d.members.Membership().IDs() },
		// A joining node's runner has no cluster to collect in.
		Ready: func() error {
			if d.members.Membership().Version() == 0 {
				return errNotMember
			}
			return nil
		},
		Dial: d.tr.GC,
	}
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
