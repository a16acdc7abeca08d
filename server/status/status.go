// Package status gathers what one node says of itself for `caspaxos
// status` and the status page: its identity and build, its data
// directory's size, its registers and tombstones, the GC queue, the
// membership version, the peers it reaches and their round trips, the
// WAL fsync p99 and the requests per second over a recent window, and
// whether it reaches a quorum. The daemon gives it the node's parts as
// functions (Sources); a Sampler keeps the window.
package status

import (
	"context"
	"io/fs"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/storage"
)

// Peer is one member as this node sees it.
type Peer struct {
	Name      string `json:"name"`
	ID        uint64 `json:"id"`
	Self      bool   `json:"self,omitempty"`
	Reachable bool   `json:"reachable"`
	// RTTSeconds is the last round trip measured on the peer link (0:
	// none measured, or this node).
	RTTSeconds float64 `json:"rtt_seconds"`
}

// Node is one node's status (GET /v1/status).
type Node struct {
	Name          string  `json:"name"`
	ID            uint64  `json:"id"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	// DataDirBytes is the size of every file under the data directory;
	// StoreBytes the store's own (storage.Space); DiskFreeBytes what the
	// filesystem still has for it (0 when unknown).
	DataDirBytes  uint64 `json:"data_dir_bytes"`
	StoreBytes    uint64 `json:"store_bytes"`
	DiskFreeBytes uint64 `json:"disk_free_bytes"`
	// Registers and Tombstones in the local store (the cluster's own
	// registers included), as counted CountedAgoSeconds ago (every
	// Config.CountEvery; -1: not counted yet).
	Registers         uint64  `json:"registers"`
	Tombstones        uint64  `json:"tombstones"`
	CountedAgoSeconds float64 `json:"counted_ago_seconds"`
	// GC: deletion GC runs here, and GCQueued keys wait in its queue.
	GC       bool `json:"gc"`
	GCQueued int  `json:"gc_queued"`
	// ConfigVersion is the membership's version; Peers its members.
	ConfigVersion uint64 `json:"config_version"`
	Peers         []Peer `json:"peers"`
	// WALFsyncP99Seconds: the upper bound of the WAL fsync bucket holding
	// the 99th percentile over WindowSeconds (since the start, before a
	// window exists; 0 with no fsync in it).
	WALFsyncP99Seconds float64 `json:"wal_fsync_p99_seconds"`
	// RequestsPerSecond: client operations this node answered per second
	// over WindowSeconds; RequestsTotal since its start.
	RequestsPerSecond float64 `json:"requests_per_second"`
	RequestsTotal     uint64  `json:"requests_total"`
	WindowSeconds     float64 `json:"window_seconds"`
	// Quorum: this node reaches a quorum of acceptors; else QuorumError
	// says why not.
	Quorum      bool   `json:"quorum"`
	QuorumError string `json:"quorum_error,omitempty"`
}

// Member is one member as the node's membership lists it.
type Member struct {
	Name      string
	ID        uint64
	Reachable bool
}

// Sources is where Collect reads the node. Every function is called once
// per Collect.
type Sources struct {
	Name    string
	ID      uint64
	DataDir string
	// Health is nil when the node reaches a quorum.
	Health func(ctx context.Context) error
	// Members returns the membership's version and members.
	Members func(ctx context.Context) (uint64, []Member, error)
	// RTT returns the peer links' last round trips, by member ID.
	RTT func() map[uint64]time.Duration
	// Store returns the store's size and the filesystem's free bytes.
	Store func() (storeBytes, freeBytes uint64)
	// WALSyncs returns the WAL fsync histogram (storage.PebbleStats).
	WALSyncs func() [storage.SyncBuckets]uint64
	// Count counts the local store's registers and tombstones (a scan:
	// the Sampler calls it every Config.CountEvery, never per Collect).
	Count func() (registers, tombstones uint64, err error)
	// GC returns the GC queue's length; ok false when no GC runs.
	GC func() (queued int, ok bool)
	// Requests returns the client operations answered since the start.
	Requests func() uint64
}

// Config configures a Sampler.
type Config struct {
	// Every is the time between samples (default 1s) and Window how far
	// back the rates reach (default 10s).
	Every  time.Duration
	Window time.Duration
	// CountEvery is the time between counts of the registers (default
	// 1m): each is a scan of the local store.
	CountEvery time.Duration
}

// DefaultConfig returns Config's defaults.
func DefaultConfig() Config {
	return Config{Every: time.Second, Window: 10 * time.Second, CountEvery: time.Minute}
}

// count is the last count of the registers.
type count struct {
	at                    time.Time // zero: none yet
	registers, tombstones uint64
}

type sample struct {
	at       time.Time
	requests uint64
	syncs    [storage.SyncBuckets]uint64
}

// Sampler keeps the samples of the last window and collects a node's
// status. Start runs its timer; Collect works without it (the rates are
// then since the start).
type Sampler struct {
	cfg     Config
	src     Sources
	start   time.Time
	mu      sync.Mutex
	samples []sample // oldest first, at most Window/Every+1
	counted count
	stop    chan struct{}
	done    chan struct{}
}

// NewSampler returns a Sampler over src; a zero field of cfg takes
// DefaultConfig's.
func NewSampler(cfg Config, src Sources) *Sampler {
	def := DefaultConfig()
	if cfg.Every <= 0 {
		cfg.Every = def.Every
	}
	if cfg.Window < cfg.Every {
		cfg.Window = max(def.Window, cfg.Every)
	}
	if cfg.CountEvery <= 0 {
		cfg.CountEvery = def.CountEvery
	}
	return &Sampler{cfg: cfg, src: src, start: time.Now()}
}

// Start samples every cfg.Every, and counts the registers at once and
// every cfg.CountEvery, until Stop.
func (s *Sampler) Start() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.record(time.Now())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.every(s.cfg.Every, s.record)
	}()
	go func() {
		defer wg.Done()
		s.recount(time.Now())
		s.every(s.cfg.CountEvery, s.recount)
	}()
	go func() { wg.Wait(); close(s.done) }()
}

// every runs fn at each tick of d until Stop.
func (s *Sampler) every(d time.Duration, fn func(time.Time)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// recount counts the registers; a failed count keeps the last one.
func (s *Sampler) recount(now time.Time) {
	regs, tombs, err := s.src.Count()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.counted = count{at: now, registers: regs, tombstones: tombs}
	s.mu.Unlock()
}

// Stop ends Start's timers and waits for them (a count under way ends first).
func (s *Sampler) Stop() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
}

// record takes one sample at now and drops those past the window.
func (s *Sampler) record(now time.Time) {
	sm := sample{at: now, requests: s.src.Requests(), syncs: s.src.WALSyncs()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, sm)
	keep := int(s.cfg.Window/s.cfg.Every) + 1
	if len(s.samples) > keep {
		s.samples = append(s.samples[:0], s.samples[len(s.samples)-keep:]...)
	}
}

// window returns the oldest sample of the window and the newest, or the
// start (zero counts) and now when fewer than two samples exist.
func (s *Sampler) window(now sample) (sample, sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 2 {
		return sample{at: s.start}, now
	}
	return s.samples[0], s.samples[len(s.samples)-1]
}

// Collect gathers the node's status now.
func (s *Sampler) Collect(ctx context.Context) Node {
	now := time.Now()
	cur := sample{at: now, requests: s.src.Requests(), syncs: s.src.WALSyncs()}
	n := Node{Name: s.src.Name, ID: s.src.ID, Version: BuildVersion(), UptimeSeconds: now.Sub(s.start).Seconds(),
		DataDirBytes: DirBytes(s.src.DataDir), RequestsTotal: cur.requests}
	n.StoreBytes, n.DiskFreeBytes = s.src.Store()
	n.GCQueued, n.GC = s.src.GC()
	s.mu.Lock()
	c := s.counted
	s.mu.Unlock()
	n.Registers, n.Tombstones, n.CountedAgoSeconds = c.registers, c.tombstones, -1
	if !c.at.IsZero() {
		n.CountedAgoSeconds = now.Sub(c.at).Seconds()
	}
	from, to := s.window(cur)
	if d := to.at.Sub(from.at).Seconds(); d > 0 {
		n.WindowSeconds = d
		n.RequestsPerSecond = float64(to.requests-from.requests) / d
	}
	var delta [storage.SyncBuckets]uint64
	for i := range delta {
		delta[i] = to.syncs[i] - from.syncs[i]
	}
	n.WALFsyncP99Seconds = P99(delta).Seconds()
	if err := s.src.Health(ctx); err != nil {
		n.QuorumError = err.Error()
	} else {
		n.Quorum = true
	}
	version, members, err := s.src.Members(ctx)
	if err == nil {
		n.ConfigVersion = version
		rtt := s.src.RTT()
		for _, m := range members {
			p := Peer{Name: m.Name, ID: m.ID, Self: m.ID == s.src.ID, Reachable: m.Reachable || m.ID == s.src.ID}
			if !p.Self {
				p.RTTSeconds = rtt[m.ID].Seconds()
			}
			n.Peers = append(n.Peers, p)
		}
		sort.Slice(n.Peers, func(i, j int) bool { return n.Peers[i].Name < n.Peers[j].Name })
	}
	return n
}

// P99 is the upper bound of the bucket of h (storage's WAL fsync
// histogram, not cumulative) that holds the 99th percentile; the last
// bucket, which has none, counts as twice the one below; 0 for an empty h.
func P99(h [storage.SyncBuckets]uint64) time.Duration {
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := (total*99 + 99) / 100 // ceil(0.99 total)
	var cum uint64
	for i, c := range h {
		cum += c
		if cum >= want {
			if i == storage.SyncBuckets-1 {
				return 2 * storage.SyncBucketBound(i-1)
			}
			return storage.SyncBucketBound(i)
		}
	}
	return 2 * storage.SyncBucketBound(storage.SyncBuckets-2)
}

// DirBytes is the size of every regular file under dir (0 if it cannot
// be read); files that vanish during the walk are skipped.
func DirBytes(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += uint64(info.Size())
		}
		return nil
	})
	return n
}

// BuildVersion is the binary's module version and VCS revision, as the
// Go toolchain recorded them.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v
}
