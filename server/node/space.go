package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/storage"
)

// SpaceConfig sets when a node refuses new writes with kv.ErrNoSpace, so
// that its disk never fills: a full disk fails a write's fsync, and a
// failed fsync stops the node (PROTOCOL.md §10). Puts, creates,
// compare-and-swaps, increments and the embedding program's changes are
// refused at the node they enter (and at the home proposer they are
// forwarded to), before anything is proposed; reads and deletes still
// run, and so do deletion GC and membership catch-up: deletes free space
// once GC collects their tombstones. Acceptors keep answering other
// nodes' proposals: the free space kept is their headroom.
type SpaceConfig struct {
	// MinFreeBytes: writes are refused while the data directory's
	// filesystem has less than this free (default 256 MiB; negative: no
	// check).
	MinFreeBytes int64
	// QuotaBytes: writes are refused while the store is larger than this
	// (storage.Space.StoreBytes; 0: no quota), like etcd's
	// --quota-backend-bytes.
	QuotaBytes int64
	// CheckInterval: how long one reading of the disk is trusted (default
	// 100ms). Writes in that time may overshoot the
	// limits by what they write.
	CheckInterval time.Duration
}

// DefaultSpaceConfig returns SpaceConfig's defaults. A zero MinFreeBytes
// or a zero or negative CheckInterval takes its value from here.
func DefaultSpaceConfig() SpaceConfig {
	return SpaceConfig{MinFreeBytes: 256 << 20, CheckInterval: 100 * time.Millisecond}
}

func (c *SpaceConfig) setDefaults() error {
	def := DefaultSpaceConfig()
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = def.MinFreeBytes
	}
	if c.QuotaBytes < 0 {
		return fmt.Errorf("caspaxos/node: QuotaBytes %d must not be negative", c.QuotaBytes)
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = def.CheckInterval
	}
	return nil
}

// spaceErr says why a store with sp must refuse new writes under cfg, or
// returns nil.
func spaceErr(sp storage.Space, cfg SpaceConfig) error {
	if cfg.QuotaBytes > 0 && sp.StoreBytes >= uint64(cfg.QuotaBytes) {
		return fmt.Errorf("%w: the store takes %d bytes, at or over its quota of %d bytes", kv.ErrNoSpace, sp.StoreBytes, cfg.QuotaBytes)
	}
	if cfg.MinFreeBytes > 0 && sp.FSKnown && sp.AvailBytes < uint64(cfg.MinFreeBytes) {
		return fmt.Errorf("%w: the data directory's filesystem has %d bytes free, below the %d bytes kept free", kv.ErrNoSpace, sp.AvailBytes, cfg.MinFreeBytes)
	}
	return nil
}

// refusesWhenFull reports whether req is a write the space check refuses:
// everything but reads and deletes.
func refusesWhenFull(req server.Request) bool {
	if req.Change != nil {
		return true
	}
	return req.Op.Kind != kv.OpGet && req.Op.Kind != kv.OpDelete
}

// spaceGuard reads a store's Space at most once per CheckInterval and
// answers from the last reading in between.
type spaceGuard struct {
	cfg  SpaceConfig
	src  storage.SpaceReporter
	now  func() time.Time // time.Now; its readings are compared monotonically
	mu   sync.Mutex       // held while reading
	last atomic.Pointer[spaceReading]
}

type spaceReading struct {
	at  time.Time
	err error // nil: writes may go on
}

func newSpaceGuard(cfg SpaceConfig, src storage.SpaceReporter) *spaceGuard {
	return &spaceGuard{cfg: cfg, src: src, now: time.Now}
}

// check returns kv.ErrNoSpace (wrapped with the reason) when writes must
// be refused. A reading that fails refuses nothing: the writes then meet
// the store's own error.
func (g *spaceGuard) check() error {
	if r := g.last.Load(); r != nil && g.now().Sub(r.at) < g.cfg.CheckInterval {
		return r.err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.last.Load(); r != nil && g.now().Sub(r.at) < g.cfg.CheckInterval {
		return r.err // another caller just read it
	}
	r := &spaceReading{at: g.now()}
	if sp, err := g.src.Space(); err == nil {
		r.err = spaceErr(sp, g.cfg)
	}
	g.last.Store(r)
	return r.err
}

// admit refuses req with kv.ErrNoSpace if it is a write and the node's
// disk is nearly full: before anything of it is proposed.
func (n *Node) admit(req server.Request) error {
	if n.space == nil || !refusesWhenFull(req) {
		return nil
	}
	return n.space.check()
}
