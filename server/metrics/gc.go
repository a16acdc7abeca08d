package metrics

import (
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/prometheus/client_golang/prometheus"
)

// gcCollector reads the runner's counters and queue at scrape time.
type gcCollector struct{ src Sources }

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
	r := c.src.GC()
	if r == nil {
		return
	}
	if n, err := r.Queued(maxQueuedCount); err == nil {
		ch <- prometheus.MustNewConstMetric(gcQueuedDesc, prometheus.GaugeValue, float64(n))
	}
	s := r.Stats()
	ch <- prometheus.MustNewConstMetric(gcTombstonesDesc, prometheus.GaugeValue, float64(s.Tombstones))
	for _, k := range gcCounters {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.value(s)))
	}
}
