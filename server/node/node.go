package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/storage"
)

// Config configures a Node: its acceptor service, its proposer driver and
// its routing. Zero values mean the defaults (DefaultConfig).
type Config struct {
	// ID is the node's ID (not 0, never reused for another node).
	ID protocol.NodeID
	// Members are the nodes whose proposers share the keys by home routing
	// (default: the acceptors of Acceptors.AcceptSet).
	Members []protocol.NodeID
	// Acceptors is the acceptor configuration the node's proposer uses.
	Acceptors protocol.Config

	// Proposer tunes the node's proposer driver. Its ID, Acceptors and
	// Deleted are the node's (the fields of this Config) and its
	// Distances the forwarder's, if that is a server.Distancer: whatever
	// they hold here is replaced.
	Proposer proposer.Config
	// Acceptor tunes the node's acceptor service; its ID is the node's.
	Acceptor acceptor.Config

	// Deleted is passed to proposer.Config: deletion GC's queue feed.
	Deleted func(key string, version uint64)

	// Space sets when the node refuses new writes because its disk is
	// nearly full (space.go). It applies when the store is a
	// storage.SpaceReporter.
	Space SpaceConfig
}

// DefaultConfig returns the defaults of the node's tunables: its
// proposer's, its acceptor's and its space check's.
func DefaultConfig() Config {
	return Config{
		Proposer: proposer.DefaultConfig(),
		Acceptor: acceptor.DefaultConfig(),
		Space:    DefaultSpaceConfig(),
	}
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("caspaxos/node: node ID must not be 0")
	}
	if len(c.Members) == 0 {
		c.Members = slices.Clone(c.Acceptors.AcceptSet)
	}
	seen := make(map[protocol.NodeID]bool, len(c.Members))
	for _, id := range c.Members {
		if id == 0 || seen[id] {
			return fmt.Errorf("caspaxos/node: members %v: IDs must be distinct and not 0", c.Members)
		}
		seen[id] = true
	}
	return c.Space.setDefaults()
}

// proposer is the proposer driver's configuration: Proposer with the
// node's own fields.
func (c Config) proposer() proposer.Config {
	pc := c.Proposer
	pc.ID, pc.Acceptors, pc.Deleted, pc.Distances = c.ID, c.Acceptors, c.Deleted, nil
	return pc
}

// Node is one caspaxos node: an acceptor service and a proposer driver
// sharing a Store, and the routing of requests to each key's home proposer.
// The embeddable store runs several in one process over Local; the network
// server runs one per process over a network server.Transport and server.Forwarder.
type Node struct {
	id       protocol.NodeID
	members  atomic.Pointer[[]protocol.NodeID] // home routing; SetMembers replaces it
	acceptor *acceptor.Acceptor
	proposer *proposer.Proposer
	fwd      server.Forwarder
	space    *spaceGuard // nil: no check
	log      *slog.Logger

	forwarded, fallbacks, localReads, farHomes atomic.Uint64
	stopping                                   atomic.Bool
}

// New starts a node. It reads the proposer's ballot ceiling from store,
// which the node uses but does not own (the caller closes it after Stop).
// tr carries its messages, fwd its forwarded requests.
func New(cfg Config, store storage.Store, tr server.Transport, fwd server.Forwarder, log *slog.Logger) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if store == nil || tr == nil || fwd == nil || log == nil {
		return nil, errors.New("caspaxos/node: New needs a store, a transport, a forwarder and a logger")
	}
	log = log.With(slog.Uint64("node_id", uint64(cfg.ID)))
	ac := cfg.Acceptor
	ac.ID = cfg.ID
	acc, err := acceptor.New(ac, store, tr, log)
	if err != nil {
		return nil, err
	}
	pc := cfg.proposer()
	if d, ok := fwd.(server.Distancer); ok {
		pc.Distances = d // timeouts follow the measured round trips
	}
	prop, err := proposer.New(pc, store, tr, log)
	if err != nil {
		return nil, err
	}
	n := &Node{
		id:       cfg.ID,
		acceptor: acc,
		proposer: prop,
		fwd:      fwd,
		log:      log,
	}
	if sr, ok := store.(storage.SpaceReporter); ok {
		n.space = newSpaceGuard(cfg.Space, sr)
	}
	n.SetMembers(cfg.Members)
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() protocol.NodeID { return n.id }

// Deliver takes a batch of messages addressed to this node: requests go to
// its acceptor service, replies to its proposer. It implements Receiver.
func (n *Node) Deliver(msgs []protocol.Message) {
	reqs, replies := splitRequests(msgs)
	if len(reqs) > 0 {
		n.acceptor.Handle(reqs)
	}
	if len(replies) > 0 {
		n.proposer.Deliver(replies)
	}
}

// splitRequests separates requests from replies, without copying when the
// batch holds only one of them (the usual case).
func splitRequests(msgs []protocol.Message) (reqs, replies []protocol.Message) {
	n := 0
	for _, m := range msgs {
		if m.Kind.IsRequest() {
			n++
		}
	}
	switch n {
	case len(msgs):
		return msgs, nil
	case 0:
		return nil, msgs
	}
	reqs = make([]protocol.Message, 0, n)
	replies = make([]protocol.Message, 0, len(msgs)-n)
	for _, m := range msgs {
		if m.Kind.IsRequest() {
			reqs = append(reqs, m)
		} else {
			replies = append(replies, m)
		}
	}
	return reqs, replies
}

// Do runs op, routed to the home proposer of op.Key. It returns the key's
// state after op (for kv.OpGet: its current state) and kv's errors: the
// operation's refusals, kv.ErrNoQuorum, kv.ErrUnknownOutcome (see
// Proposer.Propose), kv.ErrNoSpace (a write while the disk is nearly
// full: see SpaceConfig), or server.ErrStopped. Limits are the caller's to check.
func (n *Node) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	return n.Run(ctx, server.Request{Op: op})
}

// Run runs req on the home proposer of its key, forwarding it there, and
// on this node's proposer if the home is this node, is far (its round trip
// is above kv.ForwardMaxRTT: forwarding would add a wide-area round trip), or
// did not take it.
func (n *Node) Run(ctx context.Context, req server.Request) (protocol.State, error) {
	if err := n.admit(req); err != nil {
		return protocol.State{}, err
	}
	if err := n.checkLease(ctx, req); err != nil {
		return protocol.State{}, err
	}
	home := server.Home(req.Op.Key, *n.members.Load())
	forward := home != 0 && home != n.id
	if forward && !near(n.fwd, home) {
		forward = false
		n.farHomes.Add(1)
	}
	if forward {
		if req.Change == nil && req.Op.Kind == kv.OpGet {
			// A read needs no promise and no cache: try the fast path
			// here, and forward only a read that cannot finish on it (a
			// change of the key is in flight), so that its fallback
			// identity change runs at the home and leaves the home's
			// promises alone.
			s, err := n.proposer.FastRead(ctx, req.Op.Key)
			if !errors.Is(err, protocol.ErrSlowRead) {
				n.localReads.Add(1)
				return s, err
			}
		}
		s, err := n.fwd.Forward(ctx, home, req)
		if !errors.Is(err, server.ErrUnreachable) && !errors.Is(err, server.ErrStopped) {
			n.forwarded.Add(1)
			return s, err
		}
		// The home did not take it: nothing was applied, run it here.
		n.fallbacks.Add(1)
		n.log.Debug("home proposer unavailable; proposing locally", slog.Uint64("home", uint64(home)), slog.Any("error", err))
	}
	return n.proposer.Propose(ctx, req)
}

// checkLease lets a write that attaches its key to a lease run only if
// the lease is live, as a linearizable read of the lease's register says
// (kv.LeaseIsLive; kv.ErrLeaseNotFound otherwise). The lease may still end
// between that read and the write: a key attached to a lease that ended is
// then deleted by the reapers' next sweep (server/lease), as a key attached
// before its lease ended is. The node that takes the request checks it; a
// forward (Propose) does not check again.
func (n *Node) checkLease(ctx context.Context, req server.Request) error {
	if req.Change != nil || req.Op.Lease == 0 {
		return nil
	}
	switch req.Op.Kind {
	case kv.OpPut, kv.OpCreate, kv.OpCompareAndSwap:
	default:
		return nil
	}
	s, err := n.Run(ctx, server.Request{Op: kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(req.Op.Lease)}})
	if err != nil {
		return err
	}
	return kv.LeaseIsLive(s)
}

// Propose runs req on this node's own proposer, without routing: what a
// forwarded request runs. See Proposer.Propose for its results.
func (n *Node) Propose(ctx context.Context, req server.Request) (protocol.State, error) {
	if err := n.admit(req); err != nil {
		return protocol.State{}, err
	}
	return n.proposer.Propose(ctx, req)
}

// Stop stops the proposer (answering every request it holds) and then the
// acceptor service (waiting for the batches in flight). It does not close
// the store.
func (n *Node) Stop() {
	n.stopping.Store(true)
	n.proposer.Stop()
	n.acceptor.Stop()
}

// Stats counts a node's work since it started.
type Stats struct {
	Proposer proposer.Stats
	Acceptor acceptor.Stats
	// Forwarded counts requests answered by their home on another node;
	// Fallbacks those the home did not take, which ran here instead.
	Forwarded uint64
	Fallbacks uint64
	// LocalReads counts reads of keys homed elsewhere that this node
	// answered on the fast path instead of forwarding them.
	LocalReads uint64
	// FarHomes counts requests run here because their home was far (its
	// round trip above kv.ForwardMaxRTT, or failed and settling).
	FarHomes uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		Proposer:   n.proposer.Stats(),
		Acceptor:   n.acceptor.Stats(),
		Forwarded:  n.forwarded.Load(),
		Fallbacks:  n.fallbacks.Load(),
		LocalReads: n.localReads.Load(),
		FarHomes:   n.farHomes.Load(),
	}
}

// Err returns the error that stopped the node for good: a failed storage
// write or sync in its acceptor service (PROTOCOL.md §10), or its proposer
// driver stopping on its own (it could not persist its ballot ceiling).
func (n *Node) Err() error {
	if err := n.acceptor.Err(); err != nil {
		return err
	}
	select {
	case <-n.proposer.Done():
		if !n.stopping.Load() {
			return errProposerStopped
		}
	default:
	}
	return nil
}

var errProposerStopped = errors.New("caspaxos/node: proposer stopped: its ballot ceiling could not be persisted")
