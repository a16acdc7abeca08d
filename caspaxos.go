// Package caspaxos is an embeddable, replicated, strongly consistent
// key-value store built on CASPaxos ("Replicated State Machines without
// logs", Rystsov 2018).
//
// Open starts a cluster of nodes inside the process (three by default), each
// with its own storage: with Options.Dir, a Pebble database per node under
// Dir/node1, Dir/node2, ...; every acknowledged write is fsynced on a quorum
// of them. Every key is an independent register changed by compare-and-set
// functions through a leaderless quorum protocol: operations on different
// keys never wait on each other, a node that stops (or is cut off) does not
// stop the others, and a change of a key costs one round trip to the
// acceptors once its home proposer has changed it before.
//
// # Operations
//
// Get, Put, Create, CompareAndSwap, Delete, CompareAndDelete and Increment
// are linearizable per key. Every key carries a Version that strictly
// increases with every change of its value, deletion and re-creation
// included, so a compare-and-swap on a version never suffers from ABA.
// Change applies any deterministic function of the current state.
//
// # Errors
//
// Match errors with errors.Is (and errors.As for *VersionMismatchError):
//
//   - ErrNotFound: the key is absent or deleted.
//   - ErrVersionMismatch: a version condition failed; the error is a
//     *VersionMismatchError carrying the current version.
//   - ErrNotAnInteger, ErrOverflow: Increment found no decimal int64, or
//     would leave the int64 range.
//   - ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge: the request breaks
//     Options.Limits; it was checked before anything was sent.
//   - ErrNoQuorum: ctx was done before a quorum of acceptors could be asked
//     to accept the change: it was not applied and never will be. The
//     error also wraps ctx.Err(), and ErrOverloaded if the node's proposer
//     was too busy to take the change before ctx was done.
//   - ErrUnknownOutcome: the change was sent to the acceptors and ctx was
//     done before a quorum confirmed it: it may or may not take effect.
//     Retrying a non-idempotent change (Increment, say) may apply it twice.
//   - ErrClosed: the store was closed.
//
// A refusal (ErrNotFound, ErrVersionMismatch, ErrNotAnInteger, ErrOverflow)
// is answered only once the state it was decided on is known to be chosen,
// so it is as linearizable as a success.
package caspaxos

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/storage"
)

// Errors of the store; see the package documentation.
var (
	ErrNotFound        = kv.ErrNotFound
	ErrVersionMismatch = kv.ErrVersionMismatch
	ErrNotAnInteger    = kv.ErrNotAnInteger
	ErrOverflow        = kv.ErrOverflow
	ErrEmptyKey        = kv.ErrEmptyKey
	ErrKeyTooLarge     = kv.ErrKeyTooLarge
	ErrValueTooLarge   = kv.ErrValueTooLarge
	ErrNoQuorum        = kv.ErrNoQuorum
	ErrOverloaded      = kv.ErrOverloaded
	ErrUnknownOutcome  = kv.ErrUnknownOutcome
	ErrNoSpace         = kv.ErrNoSpace
	ErrClosed          = errors.New("caspaxos: store is closed")
)

// VersionMismatchError is a failed version condition; Current is the key's
// version (0 when absent or deleted).
type VersionMismatchError = kv.VersionMismatchError

// Limits bounds keys and values.
type Limits = kv.Limits

// Options configures Open. Either Dir or Stores must be set.
type Options struct {
	// Dir is where the nodes keep their data, each in a Pebble database
	// under Dir/nodeN. Reopening the same Dir finds the data again.
	Dir string
	// Stores, if not nil, are the nodes' stores, one per node, used instead
	// of Dir (tests use storage.NewMemory()). The Store closes them on Close.
	Stores []storage.Store
	// Nodes is the number of nodes (default len(Stores), or 3).
	Nodes int
	// PrepareQuorum and AcceptQuorum are the quorum sizes of the two
	// phases (default: a majority each). Every prepare quorum must
	// intersect every accept quorum: PrepareQuorum+AcceptQuorum > Nodes.
	PrepareQuorum int
	AcceptQuorum  int
	// Limits bounds keys and values (default kv.DefaultLimits).
	Limits Limits
	// DefaultTimeout bounds an operation whose ctx has no deadline
	// (default kv.DefaultRequestTimeout, 5s).
	DefaultTimeout time.Duration
	// AttemptTimeout, ReadTimeout, ReadNearTimeout, BackoffBase and
	// BackoffMax tune the proposers (see proposer.Config; zero: its
	// defaults).
	AttemptTimeout  time.Duration
	ReadTimeout     time.Duration
	ReadNearTimeout time.Duration
	BackoffBase     time.Duration
	BackoffMax      time.Duration
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// GC tunes deletion GC, which runs in the background by default.
	GC GCOptions
	// Space sets when the nodes refuse new writes with ErrNoSpace because
	// their disk is nearly full (default: below 256 MiB free; see
	// node.SpaceConfig).
	Space SpaceOptions
}

// MaxNodes bounds Options.Nodes: every node runs in this process, and each
// change is sent to all of them.
const MaxNodes = 64

// DefaultOptions returns the defaults of Options, each from the component
// it tunes: a zero field of the Options given to Open takes its value from
// here. Dir and Stores are the caller's.
func DefaultOptions() Options {
	p := proposer.DefaultConfig()
	return Options{
		Nodes:           3,
		Limits:          kv.DefaultLimits,
		DefaultTimeout:  kv.DefaultRequestTimeout,
		AttemptTimeout:  p.AttemptTimeout,
		ReadTimeout:     p.ReadTimeout,
		ReadNearTimeout: p.ReadNearTimeout,
		BackoffBase:     p.BackoffBase,
		BackoffMax:      p.BackoffMax,
		GC:              gc.DefaultOptions(),
		Space:           node.DefaultSpaceConfig(),
	}
}

// SpaceOptions: see node.SpaceConfig.
type SpaceOptions = node.SpaceConfig

// GCOptions tunes deletion GC (PROTOCOL.md §9): a delete leaves a
// tombstone, and a background runner per node removes it from every node
// once every node is reachable. See gc.Options and gc.Config.
type GCOptions = gc.Options

func (o *Options) validate() error {
	if o.Dir == "" && o.Stores == nil {
		return errors.New("caspaxos: set Options.Dir (durable) or Options.Stores")
	}
	if o.Dir != "" && o.Stores != nil {
		return errors.New("caspaxos: set Options.Dir or Options.Stores, not both")
	}
	if o.Nodes == 0 {
		o.Nodes = len(o.Stores)
	}
	def := DefaultOptions()
	if o.Nodes == 0 {
		o.Nodes = def.Nodes
	}
	if o.Stores != nil && len(o.Stores) != o.Nodes {
		return fmt.Errorf("caspaxos: %d stores for %d nodes", len(o.Stores), o.Nodes)
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("caspaxos: Nodes is %d; it must be between 1 and %d", o.Nodes, MaxNodes)
	}
	if o.Limits == (kv.Limits{}) {
		o.Limits = def.Limits
	}
	if o.Limits.MaxKeyBytes <= 0 || o.Limits.MaxValueBytes < 0 {
		return fmt.Errorf("caspaxos: limits %+v: MaxKeyBytes must be positive and MaxValueBytes not negative", o.Limits)
	}
	if o.DefaultTimeout < 0 {
		return fmt.Errorf("caspaxos: DefaultTimeout is %v; it must not be negative", o.DefaultTimeout)
	}
	if o.DefaultTimeout == 0 {
		o.DefaultTimeout = def.DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// acceptors returns the acceptor configuration of nodes 1..Nodes.
func (o *Options) acceptors() (protocol.Config, error) {
	ids := make([]protocol.NodeID, o.Nodes)
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	cfg := protocol.Majority(1, ids...)
	if o.PrepareQuorum != 0 {
		cfg.PrepareQuorum = o.PrepareQuorum
	}
	if o.AcceptQuorum != 0 {
		cfg.AcceptQuorum = o.AcceptQuorum
	}
	if err := cfg.Validate(); err != nil {
		return protocol.Config{}, fmt.Errorf("caspaxos: %w", err)
	}
	return cfg, nil
}

// Store is an embedded caspaxos cluster. Its methods are safe for
// concurrent use.
type Store struct {
	limits  kv.Limits
	timeout time.Duration
	net     *node.Local
	nodes   []*node.Node
	stores  []storage.Store
	gcs     []*gc.Runner  // one per node; nil when GC is disabled
	next    atomic.Uint64 // round-robin entry node

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error
}

// Open starts the cluster described by opts.
func Open(opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	acceptors, err := opts.acceptors()
	if err != nil {
		return nil, err
	}
	stores := opts.Stores
	if stores == nil {
		if stores, err = openPebbles(opts.Dir, opts.Nodes, opts.Logger); err != nil {
			return nil, err
		}
	}
	s := &Store{limits: opts.Limits, timeout: opts.DefaultTimeout, net: node.NewLocal(), stores: stores}
	for _, id := range acceptors.AcceptSet {
		if err := s.startNode(id, acceptors, opts); err != nil {
			s.stopNodes()
			if opts.Stores == nil {
				err = errors.Join(err, closeAll(stores))
			}
			return nil, err
		}
	}
	for _, gc := range s.gcs {
		gc.Start()
	}
	return s, nil
}

func (s *Store) startNode(id protocol.NodeID, acceptors protocol.Config, opts Options) error {
	ep := s.net.Endpoint(id)
	var g *gc.Runner // set below, before any delete can run
	cfg := node.Config{
		ID:        id,
		Acceptors: acceptors,
		Proposer: proposer.Config{
			AttemptTimeout:  opts.AttemptTimeout,
			ReadTimeout:     opts.ReadTimeout,
			ReadNearTimeout: opts.ReadNearTimeout,
			BackoffBase:     opts.BackoffBase,
			BackoffMax:      opts.BackoffMax,
		},
		Space: opts.Space,
	}
	if !opts.GC.Disabled {
		cfg.Deleted = func(key string, version uint64) { g.Enqueue(key, version) }
	}
	n, err := node.New(cfg, s.stores[id-1], ep, ep, opts.Logger)
	if err != nil {
		return fmt.Errorf("caspaxos: starting node %d: %w", id, err)
	}
	s.nodes = append(s.nodes, n)
	if err := s.net.Add(n); err != nil {
		return err
	}
	if opts.GC.Disabled {
		return nil
	}
	g, err = gc.New(opts.GC.Config(id), s.stores[id-1], n, node.NewLocalGC(s.net, id, acceptors.AcceptSet), opts.Logger.With(slog.Uint64("node_id", uint64(id))))
	if err != nil {
		return fmt.Errorf("caspaxos: starting the GC of node %d: %w", id, err)
	}
	s.gcs = append(s.gcs, g)
	return nil
}

// openPebbles opens dir/node1 ... dir/nodeN.
func openPebbles(dir string, n int, log *slog.Logger) ([]storage.Store, error) {
	var stores []storage.Store
	for i := 1; i <= n; i++ {
		st, err := storage.OpenPebble(filepath.Join(dir, fmt.Sprintf("node%d", i)), storage.PebbleOptions{
			Logger: log.With(slog.Int("node_id", i)),
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("caspaxos: opening the storage of node %d: %w", i, err), closeAll(stores))
		}
		stores = append(stores, st)
	}
	return stores, nil
}

func closeAll(stores []storage.Store) error {
	var errs []error
	for _, st := range stores {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

func (s *Store) stopNodes() {
	for _, gc := range s.gcs {
		gc.Stop()
	}
	for _, n := range s.nodes {
		n.Stop()
	}
}

// Close stops the nodes and closes their stores. Operations in flight end
// with ErrClosed (not applied) or ErrUnknownOutcome; later ones with
// ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stopNodes()
		if err := closeAll(s.stores); err != nil {
			s.closeErr = fmt.Errorf("caspaxos: closing the stores: %w", err)
		}
	})
	return s.closeErr
}

// GCStats returns each node's deletion GC counters (none when disabled).
func (s *Store) GCStats() []gc.Stats {
	out := make([]gc.Stats, len(s.gcs))
	for i, gc := range s.gcs {
		out[i] = gc.Stats()
	}
	return out
}

// Stats returns each node's counters, for metrics.
func (s *Store) Stats() []node.Stats {
	out := make([]node.Stats, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.Stats()
	}
	return out
}
