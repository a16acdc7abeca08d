package chaos

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/storage"
)

// dataDir is each node's data directory on its own in-memory disk.
const dataDir = "/data"

// errInjected is the error an armed disk returns from a sync.
var errInjected = errors.New("caspaxos/chaos: injected fsync failure (EIO)")

// syncFailer is a disk's faults: every sync takes latency (before it
// makes anything durable), and once armed (the plan's FailSync) every sync
// fails: the store stops at its next sync, as PROTOCOL.md §10 demands.
type syncFailer struct {
	latency time.Duration
	armed   atomic.Bool
	failed  atomic.Uint64
}

func (f *syncFailer) MaybeError(op errorfs.Op) error {
	if op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData {
		return nil
	}
	if f.latency > 0 {
		time.Sleep(f.latency) // a slow disk, not a wait for an outcome
	}
	if !f.armed.Load() {
		return nil
	}
	f.failed.Add(1)
	return errInjected
}

func (f *syncFailer) String() string { return "chaos.syncFailer" }

// member is one node of the cluster across its incarnations: its disk
// (replaced by a crash clone at every crash), and the store and node
// running on it while it is up.
type member struct {
	id    protocol.NodeID
	fs    *vfs.MemFS
	fail  *syncFailer
	store *storage.Pebble
	inc   *incarnation // nil while down
	// state is the membership state its Keeper persisted (as the daemon's
	// state file would, synced before Set returns): a restart takes it.
	state atomic.Pointer[membership.NodeState]
	// active: the node is part of the run (one of the first members, or a
	// joining node started for its addition) and was not removed; only an
	// active node is restarted. Read and written by the fault schedule.
	active bool
	// promised is the highest ballot of each key that a reply of one of
	// its crashed incarnations promised (invariant 3).
	promised map[string]protocol.Ballot
}

// memberOf returns node id as a membership lists it.
func memberOf(id protocol.NodeID) membership.Member {
	name := fmt.Sprintf("n%d", id)
	return membership.Member{Name: name, ID: id, PeerAddr: name}
}

// cluster is the nodes of a run. Its methods are called from the fault
// schedule's goroutine only (and at the start and the end).
type cluster struct {
	plan    Plan
	variant Variant
	net     *network
	h       *history
	log     *slog.Logger
	cfg     protocol.Config   // the first configuration
	pool    []protocol.NodeID // every node that may run: the first members, and those added
	members map[protocol.NodeID]*member
	rng     *rand.Rand // crash clones' choice of unsynced data kept

	mu   sync.Mutex // guards the fields below, read by clients
	up   map[protocol.NodeID]*incarnation
	errs []string // nodes that could not restart

	crashes, restarts, syncFailures int
	// The acceptors' counters summed over every incarnation: requests
	// refused by an age fence, registers removed; requests refused below
	// the floor and promise-only writes left unsynced (PROTOCOL.md §12).
	fenced, collected             uint64
	floorRefused, unsyncedApplies uint64
	changes                       *changes // Membership plans: node 1's controller
	watchers                      watchers // every incarnation's watchers (watch.go)
}

func newCluster(p Plan, seed uint64, v Variant, net *network, h *history, log *slog.Logger) *cluster {
	ids := make([]protocol.NodeID, p.Nodes)
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	c := &cluster{
		plan: p, variant: v, net: net, h: h, log: log,
		cfg:     protocol.Majority(1, ids...),
		members: make(map[protocol.NodeID]*member),
		up:      make(map[protocol.NodeID]*incarnation),
		rng:     rand.New(rand.NewPCG(seed, 0x6469736b)), // "disk"
	}
	first := membership.Membership{Config: c.cfg}
	for _, id := range ids {
		first.Nodes = append(first.Nodes, memberOf(id))
	}
	for id := protocol.NodeID(1); int(id) <= p.Pool(); id++ {
		m := &member{id: id, fs: vfs.NewCrashableMem(), fail: &syncFailer{latency: p.SyncLatency},
			promised: make(map[string]protocol.Ballot)}
		st := membership.NodeState{} // a joining node: no membership yet
		if int(id) <= p.Nodes {
			st, m.active = membership.NodeState{Membership: first.Clone()}, true
		}
		m.state.Store(&st)
		c.members[id] = m
		c.pool = append(c.pool, id)
	}
	return c
}

// nodeConfig is every node's configuration: the product's defaults
// (PROTOCOL.md §12 on), the configuration of its membership state st,
// short timeouts, so that a run of a few seconds sees many retries, and
// the variant's switches.
func (c *cluster) nodeConfig(id protocol.NodeID, st membership.NodeState) node.Config {
	cfg := node.DefaultConfig()
	cfg.ID, cfg.Acceptors = id, st.Membership.Config
	if cfg.Acceptors.Version == 0 {
		cfg.Acceptors = membership.JoiningConfig(id) // nothing it proposes can be chosen
	}
	cfg.Proposer = proposer.Config{
		AttemptTimeout: 50 * time.Millisecond,
		ReadTimeout:    30 * time.Millisecond,
		BackoffBase:    time.Millisecond,
		BackoffMax:     10 * time.Millisecond,
		RandSeed:       uint64(id),
	}
	c.variant.acceptor(&cfg.Acceptor)
	return cfg
}

// start opens m's store on its disk and starts its node.
func (c *cluster) start(m *member) error {
	st, err := storage.OpenPebble(dataDir, storage.PebbleOptions{FS: errorfs.Wrap(m.fs, m.fail), BallastBytes: -1})
	if err != nil {
		return fmt.Errorf("node %d: opening its store: %w", m.id, err)
	}
	inc := &incarnation{id: m.id, net: c.net, store: st, revealed: make(map[string]protocol.Ballot),
		promised: make(map[string]protocol.Ballot), promisedBefore: maps.Clone(m.promised)}
	state := *m.state.Load()
	cfg := c.nodeConfig(m.id, state)
	cfg.Deleted = func(key string, version uint64) { inc.gc.Enqueue(key, version) }
	n, err := node.New(cfg, st, inc, inc, c.log)
	if err != nil {
		return errors.Join(fmt.Errorf("node %d: %w", m.id, err), st.Close())
	}
	inc.node = n
	inc.keeper = membership.NewKeeper(n, state, inc, func(st membership.NodeState) error {
		m.state.Store(&st)
		return nil
	})
	inc.gc, err = gc.New(gcConfig(m.id), st, n, inc.keeper.GuardGC(&gcPeers{inc: inc, h: c.h}), c.log)
	if err != nil {
		n.Stop()
		return errors.Join(fmt.Errorf("node %d: %w", m.id, err), st.Close())
	}
	if inc.lister, err = c.newLister(inc); err != nil {
		inc.gc.Stop()
		n.Stop()
		return errors.Join(fmt.Errorf("node %d: %w", m.id, err), st.Close())
	}
	if err := c.startWatch(inc); err != nil {
		inc.gc.Stop()
		n.Stop()
		return errors.Join(fmt.Errorf("node %d: %w", m.id, err), st.Close())
	}
	inc.gc.Start()
	m.store, m.inc = st, inc
	c.net.attach(inc)
	c.mu.Lock()
	c.up[m.id] = inc
	c.mu.Unlock()
	return nil
}

// crash cuts m off, keeps what its disk would hold after a crash at this
// moment (synced data, and a share of the rest as the plan says), and
// stops the node, whose later writes go to the disk that was cloned and
// is now thrown away.
func (c *cluster) crash(m *member, keepPercent int) {
	if c.stop(m, keepPercent) {
		c.crashes++
	}
}

// stop takes m down as a crash would, and reports whether it was up.
func (c *cluster) stop(m *member, keepPercent int) bool {
	inc := m.inc
	if inc == nil {
		return false
	}
	c.mu.Lock()
	delete(c.up, m.id)
	c.mu.Unlock()
	c.net.detach(inc)
	clone := m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keepPercent, RNG: c.rng})
	c.checkRevealed(inc, clone)
	inc.mu.Lock()
	for key, b := range inc.promised {
		if m.promised[key].Less(b) {
			m.promised[key] = b
		}
	}
	inc.mu.Unlock()
	inc.gc.Stop()
	inc.stopWatch()
	inc.node.Stop()
	st := inc.node.Stats().Acceptor
	c.fenced += st.Fenced
	c.collected += st.Collected
	c.floorRefused += st.FloorRefused
	c.unsyncedApplies += st.UnsyncedApplies
	_ = m.store.Close() // the old disk is gone; a store stopped by a failed sync says so again
	m.fs, m.store, m.inc = clone, nil, nil
	m.fail = &syncFailer{latency: c.plan.SyncLatency}
	return true
}

// checkRevealed checks invariant 3's part that the disks show: every
// accepted ballot a reply of inc showed is still on its crashed disk
// (reading a copy of it, so that the restart finds the disk untouched).
func (c *cluster) checkRevealed(inc *incarnation, disk *vfs.MemFS) {
	regs, err := readDisk(disk.CrashClone(vfs.CrashCloneCfg{}))
	if err != nil {
		c.fail(fmt.Sprintf("node %d: reading its disk after a crash: %v", inc.id, err))
		return
	}
	inc.mu.Lock()
	defer inc.mu.Unlock()
	for key, b := range inc.revealed {
		if reg := regs[key]; reg.Accepted.Less(b) && !c.net.inv.collectedAt(inc.id, key) {
			c.fail(fmt.Sprintf("invariant 3: node %d showed key %q accepted at ballot %s, and a crash left it at %s", inc.id, key, b, reg.Accepted))
		}
	}
}

func (c *cluster) fail(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) < 20 {
		c.errs = append(c.errs, reason)
	}
}

// restart starts m again on its crashed disk, if it is down and still
// part of the run.
func (c *cluster) restart(m *member) {
	if !m.active {
		return
	}
	if m.inc != nil {
		m.fail.armed.Store(false) // its sync failure never came
		return
	}
	if err := c.start(m); err != nil {
		c.fail(err.Error())
		return
	}
	c.net.replayTo(m.id)
	c.restarts++
}

// reapFailed crashes every node that stopped itself (a failed sync): what
// an operator restarting it would do.
func (c *cluster) reapFailed() {
	for _, id := range c.ids() {
		m := c.members[id]
		if m.inc != nil && m.inc.node.Err() != nil {
			c.syncFailures++
			c.crash(m, c.plan.UnsyncedPercent)
		}
	}
}

// pick returns a running node chosen by r, nil if none runs or the one
// chosen is no member (a joining node's proposer can choose nothing, and a
// removed one is about to be stopped).
func (c *cluster) pick(r *rand.Rand) *incarnation {
	id := c.pool[r.IntN(len(c.pool))]
	c.mu.Lock()
	inc := c.up[id]
	c.mu.Unlock()
	if inc == nil || !slices.Contains(inc.keeper.Membership().IDs(), id) {
		return nil
	}
	return inc
}

// ids returns every node that may run.
func (c *cluster) ids() []protocol.NodeID {
	return c.pool
}

// shutdown stops every node as a crash would, and returns what the disks
// of ids keep: every register, per node.
func (c *cluster) shutdown(ids []protocol.NodeID) (map[protocol.NodeID]map[string]protocol.Register, error) {
	for _, id := range c.ids() {
		c.crash(c.members[id], 0)
	}
	disks := make(map[protocol.NodeID]map[string]protocol.Register)
	var errs []error
	for _, id := range ids {
		regs, err := readDisk(c.members[id].fs)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", id, err))
		}
		disks[id] = regs
	}
	return disks, errors.Join(errs...)
}

// readDisk opens a crashed disk's store and reads every register.
func readDisk(fs vfs.FS) (map[string]protocol.Register, error) {
	st, err := storage.OpenPebble(dataDir, storage.PebbleOptions{FS: fs, BallastBytes: -1})
	if err != nil {
		return nil, err
	}
	regs := make(map[string]protocol.Register)
	err = st.Scan("", func(k string, r protocol.Register) bool {
		regs[k] = r
		return true
	})
	return regs, errors.Join(err, st.Close())
}
