// Package metrics is a node's Prometheus registry: request latency
// histograms it observes itself, and counters and gauges read from the
// node, its store, its peer transport, its admission control and its GC
// runner at scrape time, through the Sources it is given.
package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/transport"
)

// Sources is where a scrape reads a node's state. Each is called at
// scrape time; GC may return nil (no runner, or not built yet).
type Sources struct {
	Node      func() node.Stats
	Store     Store
	Transport func() transport.Stats
	// Admission returns the client operations and connections refused.
	Admission func() (ops, conns uint64)
	GC        func() *gc.Runner
}

// Store is what a scrape reads of the node's store.
type Store interface {
	Stats() storage.PebbleStats
	Space() (storage.Space, error)
}

// Metrics is the node's Prometheus registry.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	served   atomic.Uint64 // the operations Observe was given
}

// New returns a registry over src.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "caspaxos_request_duration_seconds",
			Help:    "Client operations by kind and outcome (an error code, or ok).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17), // 100µs .. 6.5s
		}, []string{"op", "outcome"}),
	}
	m.reg.MustRegister(m.requests, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(&statsCollector{src: src})
	m.reg.MustRegister(&gcCollector{src: src})
	return m
}

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe records one client operation of kind op that took took and
// ended with err.
func (m *Metrics) Observe(op kv.OpKind, err error, took time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome, _ = kv.Code(err)
	}
	m.requests.WithLabelValues(op.String(), outcome).Observe(took.Seconds())
	m.served.Add(1)
}

// Served is the number of client operations observed since the start
// (what `caspaxos status` turns into requests per second).
func (m *Metrics) Served() uint64 { return m.served.Load() }

// counter is one counter read from the node's stats.
type counter struct {
	name, help string
	value      func(s snapshot) uint64
}

type snapshot struct {
	refusedOps, refusedConns uint64 // clientapi.Admission
	node                     node.Stats
	store                    storageStats
	network                  transportStats
}

type storageStats struct {
	applies, entries, syncs uint64
	syncTime                time.Duration
	syncTimes               [storage.SyncBuckets]uint64
}
type transportStats struct {
	dropped, linkFailures uint64
	frames, items         uint64
	rtt                   map[protocol.NodeID]time.Duration
}

var counters = []counter{
	{"caspaxos_proposer_requests_total", "Changes and reads taken by this node's proposer.", func(s snapshot) uint64 { return s.node.Proposer.Requests }},
	{"caspaxos_prepare_rounds_total", "Phase-1 broadcasts.", func(s snapshot) uint64 { return s.node.Proposer.PrepareRounds }},
	{"caspaxos_accept_rounds_total", "Phase-2 broadcasts.", func(s snapshot) uint64 { return s.node.Proposer.AcceptRounds }},
	{"caspaxos_one_round_trip_total", "Accept rounds sent from the one-round-trip cache (hit ratio: this / accept rounds).", func(s snapshot) uint64 { return s.node.Proposer.OneRoundTrip }},
	{"caspaxos_read_rounds_total", "Fast-path read broadcasts.", func(s snapshot) uint64 { return s.node.Proposer.ReadRounds }},
	{"caspaxos_conflicts_total", "Conflict replies received.", func(s snapshot) uint64 { return s.node.Proposer.Conflicts }},
	{"caspaxos_unknown_outcomes_total", "Requests answered with an unknown outcome.", func(s snapshot) uint64 { return s.node.Proposer.UnknownOutcomes }},
	{"caspaxos_aborted_total", "Requests abandoned before they were sent.", func(s snapshot) uint64 { return s.node.Proposer.Aborted }},
	{"caspaxos_composed_batches_total", "Batches of changes committed together.", func(s snapshot) uint64 { return s.node.Proposer.ComposedBatches }},
	{"caspaxos_composed_changes_total", "Changes in those batches (mean batch size: this / batches).", func(s snapshot) uint64 { return s.node.Proposer.ComposedChanges }},
	{"caspaxos_forwarded_total", "Requests answered by their home proposer on another node.", func(s snapshot) uint64 { return s.node.Forwarded }},
	{"caspaxos_forward_fallbacks_total", "Requests whose home was unreachable, proposed here instead.", func(s snapshot) uint64 { return s.node.Fallbacks }},
	{"caspaxos_far_home_requests_total", "Requests run here because their home node was far (round trip above 5ms) or had failed and not yet answered steadily.", func(s snapshot) uint64 { return s.node.FarHomes }},
	{"caspaxos_local_reads_total", "Reads of keys homed on another node answered here on the fast path instead of forwarded.", func(s snapshot) uint64 { return s.node.LocalReads }},
	{"caspaxos_acceptor_batches_total", "Message batches the acceptor processed.", func(s snapshot) uint64 { return s.node.Acceptor.Batches }},
	{"caspaxos_acceptor_dropped_batches_total", "Message batches the acceptor dropped.", func(s snapshot) uint64 { return s.node.Acceptor.DroppedBatches }},
	{"caspaxos_overloaded_total", "Client operations refused as overloaded (the bound of requests in flight, --max-inflight-requests).", func(s snapshot) uint64 { return s.refusedOps }},
	{"caspaxos_refused_connections_total", "Client connections closed at once, past --max-client-conns.", func(s snapshot) uint64 { return s.refusedConns }},
	{"caspaxos_storage_applies_total", "Synced storage writes.", func(s snapshot) uint64 { return s.store.applies }},
	{"caspaxos_storage_entries_total", "Registers written by them.", func(s snapshot) uint64 { return s.store.entries }},
	{"caspaxos_storage_syncs_total", "WAL fsyncs (sync batch size: applies / syncs).", func(s snapshot) uint64 { return s.store.syncs }},
	{"caspaxos_peer_dropped_total", "Items not sent to a peer (link down or queue full).", func(s snapshot) uint64 { return s.network.dropped }},
	{"caspaxos_peer_frames_total", "Frames written to peers (heartbeats included).", func(s snapshot) uint64 { return s.network.frames }},
	{"caspaxos_peer_frame_items_total", "Messages, forwards and replies written to peers, in frames.", func(s snapshot) uint64 { return s.network.items }},
	{"caspaxos_peer_link_failures_total", "Connections of peer links that broke or could not open.", func(s snapshot) uint64 { return s.network.linkFailures }},
}

// statsCollector reads the counters at scrape time.
type statsCollector struct{ src Sources }

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, k := range counters {
		ch <- prometheus.NewDesc(k.name, k.help, nil, nil)
	}
	ch <- composedDesc
	ch <- peerRTTDesc
	ch <- walSyncDesc
	ch <- storeBytesDesc
	ch <- diskFreeDesc
}

var storeBytesDesc = prometheus.NewDesc("caspaxos_storage_bytes",
	"The store's files on disk (what --quota-bytes bounds; compare etcd_mvcc_db_total_size_in_bytes).", nil, nil)

var diskFreeDesc = prometheus.NewDesc("caspaxos_storage_disk_free_bytes",
	"Free space of the data directory's filesystem; writes are refused with no_space below --min-free-bytes.", nil, nil)

var walSyncDesc = prometheus.NewDesc("caspaxos_storage_wal_sync_duration_seconds",
	"Time each fsync of the storage's write-ahead log took (every acknowledged write waits for one; compare etcd_disk_wal_fsync_duration_seconds).", nil, nil)

var peerRTTDesc = prometheus.NewDesc("caspaxos_peer_rtt_seconds",
	"Round-trip time to each peer: the smallest of its link's last 16 probes (a gRPC health check over the peer connection, every 4 heartbeats); 2s while a peer that failed settles. Routing and the timeouts follow it.", []string{"peer"}, nil)

var composedDesc = prometheus.NewDesc("caspaxos_composed_batch_size_total",
	"Batches by size class: le is the upper bound of the class (2^i .. 2^(i+1)-1 changes).", []string{"le"}, nil)

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.snapshot()
	for _, k := range counters {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(k.name, k.help, nil, nil), prometheus.CounterValue, float64(k.value(s)))
	}
	for i, n := range s.node.Proposer.Composed {
		le := "+Inf"
		if i < len(s.node.Proposer.Composed)-1 {
			le = strconv.Itoa(1<<(i+1) - 1)
		}
		ch <- prometheus.MustNewConstMetric(composedDesc, prometheus.CounterValue, float64(n), le)
	}
	buckets := make(map[float64]uint64, storage.SyncBuckets-1)
	var cum uint64
	for i, n := range s.store.syncTimes[:storage.SyncBuckets-1] {
		cum += n
		buckets[storage.SyncBucketBound(i).Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(walSyncDesc, s.store.syncs, s.store.syncTime.Seconds(), buckets)
	for id, d := range s.network.rtt {
		ch <- prometheus.MustNewConstMetric(peerRTTDesc, prometheus.GaugeValue, d.Seconds(), strconv.FormatUint(uint64(id), 10))
	}
	if sp, err := c.src.Store.Space(); err == nil {
		ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(sp.StoreBytes))
		if sp.FSKnown {
			ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(sp.AvailBytes))
		}
	}
}

func (src Sources) snapshot() snapshot {
	ps := src.Store.Stats()
	ts := src.Transport()
	refusedOps, refusedConns := src.Admission()
	return snapshot{
		refusedOps: refusedOps, refusedConns: refusedConns,
		node: src.Node(),
		store: storageStats{applies: ps.Applies, entries: ps.Entries, syncs: ps.WALSyncs,
			syncTime: ps.WALSyncTime, syncTimes: ps.WALSyncTimes},
		network: transportStats{dropped: ts.Dropped, linkFailures: ts.LinkFailures, frames: ts.Frames, items: ts.Items, rtt: ts.RTT},
	}
}
