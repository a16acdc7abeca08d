// Package lease runs the expiry of leases on a node (COORDINATION.md,
// "Leases"; kv/lease.go; docs/leases.md).
//
// A lease is a register; its expiry is a committed change of that
// register (kv.OpLeaseExpire), which any node may propose: the proposer
// fixes its time before the change runs, and the change commits the expiry
// only if that time is past renewed + TTL + the clock-skew bound. Every
// node runs a Reaper: it scans its own acceptor's store for the leases it
// holds a live copy of, and proposes the expiry of each one its clock says
// may be expired. The scan is only a filter (a local copy may be stale);
// the decision is the committed change, so a reaper on a node with a bad
// clock can only propose expiries that the change refuses or that are
// late, never one that is early by more than the skew bound. No node owns
// a lease: a node that dies changes nothing, since every other node's
// reaper expires the same leases.
//
// Keys attached to a lease (kv.Op.Lease; protocol.State.Lease) end with
// it. Each Once also sweeps the store's attached index (storage's
// ScanAttached, lease ID -> key): for every lease with attached keys whose
// local copy says it may have ended (mayHaveEnded), and for a few more in
// turn (RecheckPerSweep), it reads the lease's register linearizably, once
// per sweep; if the lease is expired, revoked
// or absent, it proposes on each attached key kv.OpDeleteAttached, a
// committed change that deletes the key only while the key is still
// attached to that lease. The index is a filter, like the scan for
// expiry: it may be stale (the key re-put without the lease, or with
// another), and only the committed change decides, so a key is never
// deleted while it is attached to a live lease or to none. A write that
// attached its key to a lease that ended between the node's liveness check
// and the write is deleted by the next sweep the same way. Revoke sweeps
// its lease at once (SweepLease), on the node that revoked it.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Config configures a Reaper. A zero field takes DefaultConfig's value.
type Config struct {
	// Interval is the time between scans (default 500ms). A lease expires
	// at most about Interval + the skew bound + a round trip after its
	// TTL has passed since its last renewal, while any node runs.
	Interval time.Duration
	// MaxClockSkew is the skew bound the expiry rule adds (default
	// kv.DefaultMaxClockSkew); the proposer's own bound (its
	// kv.Idempotency) is the one the committed change uses.
	MaxClockSkew time.Duration
	// OpTimeout bounds one expiry proposal (default 2s).
	OpTimeout time.Duration
	// MaxPerScan bounds the expiries one scan proposes, and the deletes
	// of attached keys one sweep proposes (default 1024 each).
	MaxPerScan int
	// RecheckPerSweep: each sweep also reads linearizably up to this many
	// leases with attached keys whose local copy says they are live and
	// not yet due, in turn, so that each is read at least once every
	// ceil(leases / RecheckPerSweep) + 1 sweeps (default 16). A node
	// whose acceptor missed a revoke keeps a live copy; another node's
	// sweep normally deletes the keys first, and this bounds the delay
	// when it does not, at a bounded cost.
	RecheckPerSweep int
	// Parallel bounds the deletes of attached keys in flight (default 16).
	Parallel int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Interval: 500 * time.Millisecond, MaxClockSkew: kv.DefaultMaxClockSkew, OpTimeout: 2 * time.Second, MaxPerScan: 1024,
		RecheckPerSweep: 16, Parallel: 16}
}

func (c *Config) fill() error {
	def := DefaultConfig()
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.Interval, def.Interval}, {&c.MaxClockSkew, def.MaxClockSkew}, {&c.OpTimeout, def.OpTimeout}} {
		if *d.v < 0 || *d.v > time.Hour {
			return fmt.Errorf("caspaxos/lease: duration %v is not within 0..1h", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{{"MaxPerScan", &c.MaxPerScan, def.MaxPerScan}, {"RecheckPerSweep", &c.RecheckPerSweep, def.RecheckPerSweep}, {"Parallel", &c.Parallel, def.Parallel}} {
		if *n.v < 0 || *n.v > 1<<20 {
			return fmt.Errorf("caspaxos/lease: %s %d is not within 0..%d", n.name, *n.v, 1<<20)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return nil
}

// Scanner reads this node's store (a storage.Store): Scan walks its
// registers in key order from start until fn returns false, Get reads one,
// ScanAttached pages its attached index.
type Scanner interface {
	Scan(start string, fn func(key string, reg protocol.Register) bool) error
	Get(key string) (protocol.Register, error)
	ScanAttached(afterLease uint64, afterKey string, fn func(lease uint64, key string) bool) error
}

// Doer runs an operation on the cluster (a *node.Node).
type Doer interface {
	Do(ctx context.Context, op kv.Op) (protocol.State, error)
}

// Stats counts a reaper's work.
type Stats struct {
	Scans    uint64
	Proposed uint64 // expiries proposed
	Expired  uint64 // ... committed
	Ended    uint64 // leases with attached keys found ended by a sweep
	Detaches uint64 // deletes of attached keys proposed (kv.OpDeleteAttached)
	Detached uint64 // ... that committed a delete
}

// Reaper proposes the expiry of leases. Start it once; Stop ends it.
type Reaper struct {
	cfg  Config
	scan Scanner
	do   Doer
	now  func() time.Time
	log  *slog.Logger

	// unguarded is a deliberately broken variant, set only by tests
	// (export_test.go): the sweep deletes attached keys with a plain
	// kv.OpDelete, without the check that the key is still attached.
	unguarded bool

	sweepMu sync.Mutex // one sweep at a time
	// recheckAfter is the last lease a sweep rechecked (RecheckPerSweep),
	// under sweepMu: the next sweep rechecks the leases after it.
	recheckAfter uint64

	mu    sync.Mutex
	stats Stats
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// New returns a Reaper over this node's store and its node. now is the
// node's clock (time.Now).
func New(cfg Config, scan Scanner, do Doer, now func() time.Time, log *slog.Logger) (*Reaper, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if scan == nil || do == nil || now == nil || log == nil {
		return nil, errors.New("caspaxos/lease: New needs a scanner, a doer, a clock and a logger")
	}
	return &Reaper{cfg: cfg, scan: scan, do: do, now: now, log: log, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start runs the reaper's loop.
func (r *Reaper) Start() { go r.run() }

// Stop ends the loop and waits for it.
func (r *Reaper) Stop() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// Stats returns the counters.
func (r *Reaper) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Reaper) run() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.Once()
		}
	}
}

// Once scans the local store and proposes the expiry of every lease that
// looks expirable by this node's clock.
func (r *Reaper) Once() {
	due := r.due()
	for _, key := range due {
		select {
		case <-r.stop:
			return
		default:
		}
		r.expire(key)
	}
	r.sweep()
	r.mu.Lock()
	r.stats.Scans++
	r.mu.Unlock()
}

// due lists the leases of the local store that look expirable now.
func (r *Reaper) due() []string {
	now, skew := r.now().UnixMilli(), r.cfg.MaxClockSkew.Milliseconds()
	var due []string
	err := r.scan.Scan(kv.LeasePrefix, func(key string, reg protocol.Register) bool {
		if !strings.HasPrefix(key, kv.LeasePrefix) || len(due) >= r.cfg.MaxPerScan {
			return false
		}
		if l, err := kv.LeaseOf(reg.State); err == nil && kv.LeaseExpirable(l, now, skew) && kv.IsLeaseKey(key) {
			due = append(due, key)
		}
		return true
	})
	if err != nil {
		r.log.Warn("lease scan failed", "err", err)
	}
	return due
}

// expire proposes the expiry of one lease.
func (r *Reaper) expire(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
	defer cancel()
	r.mu.Lock()
	r.stats.Proposed++
	r.mu.Unlock()
	_, err := r.do.Do(ctx, kv.Op{Kind: kv.OpLeaseExpire, Key: key})
	switch {
	case err == nil:
		r.mu.Lock()
		r.stats.Expired++
		r.mu.Unlock()
	case errors.Is(err, kv.ErrLeaseNotExpired), errors.Is(err, kv.ErrLeaseNotFound):
		// Renewed, or expired or revoked by another node meanwhile.
	default:
		r.log.Debug("lease expiry not settled", "key", key, "err", err)
	}
}
