package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/internal/connsplit"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/metrics"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/peerapi"
	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/transport"
)

// Daemon is one running node.
type Daemon struct {
	cfg       Config
	id        protocol.NodeID
	acceptors protocol.Config
	store     *storage.Pebble
	dir       *storage.Dir // the store's data directory: the state files
	tr        *transport.Transport
	relay     *relay
	node      *node.Node
	members   *membership.Keeper // membership.go
	ctl       *membership.Controller
	admin     *peerapi.AdminClients
	gc        atomic.Pointer[gc.Runner] // gc.go; nil when disabled
	peerSrv   *grpc.Server
	grpcSrv   *grpc.Server
	httpSrv   *http.Server
	split     *connsplit.Listener
	grpcAPI   *clientapi.GRPC
	admission *clientapi.Admission
	metrics   *metrics.Metrics
	log       *slog.Logger
	stopOnce  sync.Once
	done      chan struct{}
	fatal     chan struct{}
	fatalErr  error
	removed   chan struct{}
	member    atomic.Bool // WAS-MEMBER exists (membership.go)
	closing   atomic.Bool // Stop has begun: the hold probe frees nothing more
	fatalOnce sync.Once

	tls      tlsSources   // tls.go
	ident    dataIdentity // identity.go
	dirAge   dirAge       // what loadIdentity found
	book     *peerBook
	sealWait sealWait
	serveMu  sync.Mutex  // orders startServing with Stop
	serving  atomic.Bool // the node answers peers and clients (identity.go)
	stopSeal context.CancelFunc
}

// Start opens the node's storage, binds its addresses and starts serving.
// Every problem it can detect up front (invalid configuration, a data
// directory in use or of an unknown format, an address taken) is returned
// before anything is served.
func Start(cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	acceptors, err := cfg.acceptors()
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, acceptors: acceptors, log: cfg.Logger.With("node", cfg.Name),
		done: make(chan struct{}), fatal: make(chan struct{}), removed: make(chan struct{})}
	d.store, err = storage.OpenPebble(cfg.DataDir, storage.PebbleOptions{Logger: d.log})
	if err != nil {
		return nil, err
	}
	d.dir = d.store.Dir()
	if err := d.loadIdentity(); err != nil {
		d.store.Close()
		return nil, err
	}
	d.admission, err = clientapi.NewAdmission(cfg.Admission)
	if err == nil {
		err = d.loadTLS()
	}
	if err != nil {
		d.store.Close()
		return nil, err
	}
	peerLis, clientLis, err := listen(cfg)
	if err != nil {
		d.store.Close()
		return nil, err
	}
	if err := d.startNode(); err != nil {
		peerLis.Close()
		clientLis.Close()
		d.store.Close()
		return nil, err
	}
	if err := d.serve(peerLis, clientLis); err != nil {
		d.node.Stop()
		d.tr.Close()
		peerLis.Close()
		clientLis.Close()
		d.store.Close()
		return nil, err
	}
	go d.watch()
	d.log.Info("caspaxos node started", "node_id", uint64(d.id), "client_addr", clientLis.Addr().String(),
		"peer_addr", peerLis.Addr().String(), "data_dir", cfg.DataDir, "members", len(cfg.Cluster),
		"incarnation", d.ident.Incarnation, "client_tls", d.tls.client != nil, "peer_tls", d.tls.peer != nil)
	for _, w := range d.warnings() {
		d.log.Error("INSECURE: "+w, "peer_addr", cfg.PeerAddr)
	}
	switch {
	case d.ident.Joined || d.book.sealed() || d.members.Config().Version == 0:
		d.startServing()
	default:
		if d.dirAge == dirUpgraded {
			d.startServing() // its state is there; it seals meanwhile
		}
		d.sealWait.set([]string{"the first answers"})
		ctx, cancel := context.WithCancel(context.Background())
		d.stopSeal = cancel
		go d.sealLoop(ctx)
	}
	return d, nil
}

// loadIdentity reads (or, at the directory's first start, makes) the data
// directory's identity and the members' incarnations (identity.go).
func (d *Daemon) loadIdentity() error {
	var err error
	if d.ident, d.dirAge, err = loadIdentity(d.cfg, d.dir); err != nil {
		return err
	}
	d.id = d.ident.id()
	d.book, err = loadPeerBook(d.dir)
	return err
}

// startServing lets the node answer its peers' protocol messages and
// forwards and its clients, and starts deletion GC: at once on a node whose
// identity the cluster knows, else once the members confirmed it
// (identity.go).
func (d *Daemon) startServing() {
	d.serveMu.Lock()
	defer d.serveMu.Unlock()
	if d.closing.Load() || d.serving.Load() {
		return
	}
	d.relay.node.Store(d.node)
	d.serving.Store(true)
	if gc := d.gc.Load(); gc != nil {
		gc.Start()
	}
}

// stopFatal stops the node for good with err: Fatal is closed and the
// process must exit.
func (d *Daemon) stopFatal(err error) {
	d.fatalOnce.Do(func() {
		d.fatalErr = err
		d.log.Error("this node stops serving", "err", err)
		close(d.fatal)
	})
}

func listen(cfg Config) (peer, client net.Listener, err error) {
	peer, err = net.Listen("tcp", cfg.PeerAddr)
	if err != nil {
		return nil, nil, &ConfigError{Problems: []Problem{problem("%s: %v", Field("PeerAddr"), err)}}
	}
	client, err = net.Listen("tcp", cfg.ClientAddr)
	if err != nil {
		peer.Close()
		return nil, nil, &ConfigError{Problems: []Problem{problem("%s: %v", Field("ClientAddr"), err)}}
	}
	return peer, client, nil
}

// startNode builds the transport and the node; they refer to each other
// through the relay, which drops what arrives before the node exists.
func (d *Daemon) startNode() error {
	st, err := loadState(d.cfg, d.dir, d.acceptors)
	if err != nil {
		return err
	}
	if st.Membership.Version() > 0 {
		d.acceptors = st.Membership.Config
	} else {
		d.acceptors = membership.JoiningConfig(d.id)
	}
	d.relay = &relay{limits: d.cfg.Limits}
	tc := d.cfg.Transport
	tc.Self, tc.Peers, tc.Limits, tc.Logger, tc.TLS = d.id, nil, d.cfg.Limits, d.log, d.tls.peer
	tr, err := transport.New(tc, d.relay)
	if err != nil {
		return err
	}
	d.tr = tr
	nc := d.cfg.Node
	nc.ID, nc.Members, nc.Acceptors, nc.Deleted = d.id, nil, d.acceptors, d.deleted
	node, err := node.New(nc, d.store, &links{self: d.id, relay: d.relay, tr: tr}, forwarder{tr: tr}, d.log)
	if err != nil {
		tr.Close()
		return err
	}
	d.node = node
	d.members = membership.NewKeeper(node, st, peerLinks{tr}, d.saveState)
	d.node.SetMembers(st.Membership.IDs())
	adminTLS, err := d.peerClientTLS()
	if err != nil {
		node.Stop()
		tr.Close()
		return err
	}
	d.admin = &peerapi.AdminClients{TLS: adminTLS}
	cc := d.cfg.Membership
	cc.Self = membership.Member{Name: d.cfg.Name, ID: d.id, PeerAddr: d.cfg.PeerAddr}
	d.ctl, err = membership.NewController(cc, d.admin, node.Proposer(), changeStore{d.dir},
		d.members.Membership, d.log)
	if err == nil {
		err = d.ctl.Resume()
	}
	if err == nil {
		err = d.checkNotRemoved()
	}
	if err == nil {
		err = d.startGC()
	}
	if err != nil {
		node.Stop()
		tr.Close()
		return err
	}
	d.metrics = metrics.New(metrics.Sources{
		Node:      node.Stats,
		Store:     d.store,
		Transport: d.tr.Stats,
		Admission: d.admission.Refused,
		GC:        d.gc.Load,
	})
	return nil
}

// The client gRPC server's receive bound: one op at the limits (its key,
// its value and grpcOpOverheadBytes for the rest), or a Batch message of
// many small ones (the Go client keeps those under 1.25 MiB), and gRPC's
// default minGRPCRecvBytes at least.
const (
	grpcOpOverheadBytes = 4096
	minGRPCRecvBytes    = 4 << 20
)

func (d *Daemon) serve(peerLis, clientLis net.Listener) error {
	// gRPC and HTTP/1 share the client address: told apart by their
	// first bytes, or over TLS by ALPN (tls.go). (gRPC's net/http bridge
	// would avoid this, at a large cost in throughput.)
	split, err := d.clientListener(d.admission.Listener(clientLis))
	if err != nil {
		return err
	}
	d.split = split
	d.peerSrv = grpc.NewServer(d.tr.ServerOptions()...)
	peerapi.Register(d.peerSrv, adminNode{d: d}, d.node)
	d.tr.Serve(peerLis, d.peerSrv)

	opts := append(clientapi.KeepaliveOptions(),
		grpc.MaxRecvMsgSize(max(d.cfg.Limits.MaxValueBytes+d.cfg.Limits.MaxKeyBytes+grpcOpOverheadBytes, minGRPCRecvBytes)))
	if d.tls.client != nil {
		// TLS ends in the listener; a call's peer.FromContext(ctx).AuthInfo
		// is still a credentials.TLSInfo with the client's certificate.
		opts = append(opts, grpc.Creds(certs.Terminated()))
	}
	d.grpcSrv = grpc.NewServer(opts...)
	d.grpcAPI = clientapi.RegisterGRPC(d.grpcSrv, clientapi.GRPCConfig{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout,
		Admission: d.admission, Warnings: d.warnings}, d)
	go func() { _ = d.grpcSrv.Serve(d.split.Match) }()
	d.httpSrv = clientapi.NewHTTPServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout,
		Metrics: d.metrics.Handler(), Logger: d.log, Admission: d.admission, Warnings: d.warnings}, d), d.cfg.HTTP, d.log)
	go func() { _ = d.httpSrv.Serve(d.split.Other) }()
	return nil
}

// Fatal is closed when the node stopped for good because its storage
// failed (fail-stop, PROTOCOL.md §10), or because the cluster does not know
// its data directory (identity.go); FatalErr then says why. The process
// must exit: the node answers no request any more.
func (d *Daemon) Fatal() <-chan struct{} { return d.fatal }

// FatalErr is the error that closed Fatal.
func (d *Daemon) FatalErr() error { return d.fatalErr }

// Removed is closed when a membership change removed this node from the
// cluster: it had been a member, the membership it uses no longer lists it,
// the change is over (or the node has been outside the membership for
// Timers.RemovedGrace) and no change runs on its own controller. The node has no
// part left in the cluster, and the process should stop (as etcd's removed
// members do), instead of serving clients from outside it.
func (d *Daemon) Removed() <-chan struct{} { return d.removed }

// checkNotRemoved refuses to start a node that was removed: one that has
// been a member, is not listed any more and has no change of its own to
// finish. It records that the node is a member when it is one.
func (d *Daemon) checkNotRemoved() error {
	if b, err := d.dir.ReadState(storage.RemovedFile); err != nil {
		return err
	} else if b != nil {
		return fmt.Errorf("caspaxos/daemon: node %s was removed from the cluster while it was down (a peer uses membership version %s, which does not list it); to add it again, start it with --join on an empty data directory and add it",
			d.cfg.Name, strings.TrimSpace(string(b)))
	}
	if d.isMember() {
		return d.markMember()
	}
	was, err := d.wasMember()
	if err != nil || !was || d.MemberChange() != nil {
		return err
	}
	return fmt.Errorf("caspaxos/daemon: node %s was removed from the cluster (membership version %d); to add it again, start it with --join on an empty data directory and add it",
		d.cfg.Name, d.members.Config().Version)
}

// probeRemoved asks the other members of the membership this node uses for
// theirs. It returns the version of a newer one that does not list this
// node and whose change is over, or 0. Node IDs are never reused, so such a
// membership means that this node was removed for good. A peer that is in
// the middle of a change is not asked to decide (the change may still
// reach this node, which then stops by the rule in watch), nor is one that
// predates the question (its answer has no caller_listed).
func (d *Daemon) probeRemoved(ctx context.Context) uint64 {
	m := d.members.Membership()
	for _, n := range m.Nodes {
		if n.ID == d.id {
			continue
		}
		info, ok := d.memberInfo(ctx, n)
		if !ok {
			continue
		}
		if info.Version > m.Version() && info.CallerListed != nil && !*info.CallerListed && !info.Changing {
			return info.Version
		}
	}
	return 0
}

// memberInfo asks member m for its Info (naming this node as the caller);
// ok is false if it did not answer within Timers.MemberInfoTimeout, or if another node
// (another incarnation) answers at its address.
func (d *Daemon) memberInfo(ctx context.Context, m membership.Member) (peerapi.Info, bool) {
	ictx, cancel := context.WithTimeout(ctx, d.cfg.Timers.MemberInfoTimeout)
	defer cancel()
	info, err := d.admin.Info(ictx, m.PeerAddr, d.id, "")
	return info, err == nil && info.ID == m.ID
}

// probeHold asks the controller of the change that holds this node (held)
// whether it still stores that change, and frees the node if it does not
// (membership.Keeper.ReleaseStale). It reports whether it freed it.
func (d *Daemon) probeHold(ctx context.Context, held membership.NodeState) bool {
	// The controller as the membership lists it, or, if it removed
	// itself, as an earlier membership did: a controller gone from the
	// membership may still run its change (its catch-up), and is asked too.
	ctl, ok := d.members.HoldController(held)
	if !ok {
		return false // nobody to ask: an operator's `members release` frees it
	}
	controls, changeID, ok := d.askController(ctx, ctl, held)
	if !ok || !holdOver(controls, changeID, held) || d.closing.Load() {
		return false
	}
	released, err := d.members.ReleaseStale(held)
	if err != nil {
		d.log.Error("cannot free this node of a membership change that is over", "controller", held.Controller, "err", err)
		return false
	}
	if released {
		d.log.Warn("freed this node of a membership change its controller no longer runs (deletion GC resumes)",
			"controller", held.Controller, "change", held.ChangeID)
	}
	return released
}

// holdOver reports whether the change that holds a node (held) is over,
// by what its controller said: whether it stores a change (controls; nil
// when it could not tell, or predates the question) and which (changeID).
// Another change of the same controller is not the one that holds the node
// either: had it held the node, the node's state would name it.
//
// A stored change without an ID (rewritten by an earlier release, which
// drops the field) cannot be told from the one holding the node.
func holdOver(controls *bool, changeID string, held membership.NodeState) bool {
	return controls != nil && (!*controls || changeID != "" && changeID != held.ChangeID)
}

// watch closes Fatal when the acceptor service stops after a failed write,
// and Removed when this node is no longer a member (see Removed): by the
// membership it uses, or by a peer's newer one (probeRemoved).
func (d *Daemon) watch() {
	t := time.NewTicker(d.cfg.Timers.WatchInterval)
	defer t.Stop()
	probe := time.NewTicker(d.cfg.Timers.RemovedProbeInterval)
	defer probe.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := d.wasMember(); err != nil {
		d.log.Error("cannot tell whether this node has been a member; it will not stop by itself if removed", "err", err)
	}
	var outside time.Time // since when a member is not listed; zero while it is
	removed, probing, holdProbing := false, false, false
	found := make(chan uint64, 1)
	holdDone := make(chan bool, 1)
	for {
		select {
		case <-d.done:
			return
		case <-probe.C:
			if !removed && !probing && d.member.Load() && d.isMember() && d.MemberChange() == nil {
				probing = true
				go func() { found <- d.probeRemoved(ctx) }()
			}
			if st := d.members.State(); !removed && !holdProbing && st.Changing {
				holdProbing = true
				go func() { holdDone <- d.probeHold(ctx, st) }()
			}
		case <-holdDone:
			holdProbing = false
		case v := <-found:
			probing = false
			if v == 0 || removed || d.MemberChange() != nil {
				continue
			}
			if err := d.dir.WriteState(storage.RemovedFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
				d.log.Error("cannot record the removal in the data directory", "err", err)
			}
			d.log.Warn("this node was removed from the cluster while it was down (a peer uses a newer membership that does not list it); it stops serving",
				"membership_version", d.members.Membership().Version(), "peer_membership_version", v)
			removed = true
			close(d.removed)
		case <-t.C:
			if err := d.node.Err(); err != nil {
				d.stopFatal(fmt.Errorf("storage failed (fail-stop): %w", err))
				return
			}
			switch st := d.members.State(); {
			case removed:
			case d.lists(st.Membership):
				outside = time.Time{}
			case !d.member.Load() || d.MemberChange() != nil:
			case outside.IsZero():
				outside = time.Now()
			case !st.Changing || time.Since(outside) >= d.cfg.Timers.RemovedGrace:
				d.log.Warn("this node was removed from the cluster; it stops serving", "membership_version", st.Membership.Version())
				removed = true
				close(d.removed)
			}
		}
	}
}

// isMember reports whether the membership this node uses lists it.
func (d *Daemon) isMember() bool { return d.lists(d.members.Membership()) }

// lists reports whether m lists this node.
func (d *Daemon) lists(m membership.Membership) bool {
	return slices.ContainsFunc(m.Nodes, func(n membership.Member) bool { return n.ID == d.id })
}

// ClientAddr is the address the client API listens on (with the port the
// system chose, if the configuration said port 0).
func (d *Daemon) ClientAddr() string { return d.split.Addr().String() }

// Stop stops serving, answers what is in flight and closes the storage.
func (d *Daemon) Stop() error {
	var err error
	d.stopOnce.Do(func() {
		d.serveMu.Lock()
		d.closing.Store(true)
		d.serveMu.Unlock()
		if d.stopSeal != nil {
			d.stopSeal()
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timers.StopTimeout)
		defer cancel()
		// Peers stop forwarding here first, while this node still answers
		// the forwards it has: a graceful stop leaves no unknown outcomes.
		leave, cancelLeave := context.WithTimeout(ctx, d.cfg.Timers.LeaveTimeout)
		d.tr.Leave(leave)
		cancelLeave()
		_ = d.httpSrv.Shutdown(ctx)
		graceful := make(chan struct{})
		d.grpcAPI.Drain() // Batch streams end once their ops are answered
		go func() { d.grpcSrv.GracefulStop(); close(graceful) }()
		select {
		case <-graceful:
		case <-ctx.Done():
			d.grpcSrv.Stop()
		}
		// Forwards taken before the peers learnt of the leave run to the
		// end here, and their answers leave, before the node stops. A
		// budget of its own: slow clients may have used up ctx.
		quiesce, cancelQuiesce := context.WithTimeout(context.Background(), d.cfg.Timers.QuiesceTimeout)
		d.tr.Quiesce(quiesce)
		cancelQuiesce()
		d.split.Close()
		if gc := d.gc.Load(); gc != nil && d.serving.Load() {
			gc.Stop()
		}
		d.ctl.Stop()
		d.admin.Close()
		d.node.Stop()
		d.peerSrv.Stop()
		d.tr.Close()
		err = d.store.Close()
		close(d.done)
		d.log.Info("caspaxos node stopped")
	})
	return err
}

// Do runs one client operation (clientapi.Backend).
//
// A node that knows it cannot reach a quorum (its peers have been silent
// past Transport.DeadAfter) answers kv.ErrNoQuorum at once, having sent nothing.
func (d *Daemon) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	start := time.Now()
	var s protocol.State
	err := d.Health(ctx)
	if err != nil {
		err = fmt.Errorf("%w: %v", kv.ErrNoQuorum, err)
	} else {
		s, err = d.node.Do(ctx, op)
	}
	d.metrics.Observe(op.Kind, err, time.Since(start))
	return s, err
}

// relay is the transport's Handler: the node, once it exists.
type relay struct {
	node   atomic.Pointer[node.Node]
	limits kv.Limits
}

func (r *relay) Deliver(msgs []protocol.Message) {
	if n := r.node.Load(); n != nil {
		n.Deliver(msgs)
	}
}

// Serve runs a forwarded operation on this node's proposer. A node that is
// starting or stopping did not run it, and says so (transport.ErrNotTaken),
// so that the caller proposes it itself.
func (r *relay) Serve(ctx context.Context, op kv.Op) (protocol.State, error) {
	n := r.node.Load()
	if n == nil {
		return protocol.State{}, fmt.Errorf("%w: node starting", transport.ErrNotTaken)
	}
	if err := op.Validate(r.limits); err != nil {
		return protocol.State{}, err
	}
	s, err := n.Propose(ctx, server.Request{Op: op})
	if errors.Is(err, server.ErrStopped) {
		return s, fmt.Errorf("%w: %v", transport.ErrNotTaken, err)
	}
	return s, err
}

// links is the node's server.Transport: messages to itself go straight to
// its own node, the rest over the peer transport.
type links struct {
	self  protocol.NodeID
	relay *relay
	tr    *transport.Transport
}

func (l *links) Send(to protocol.NodeID, msgs []protocol.Message) error {
	if to == l.self {
		l.relay.Deliver(msgs)
		return nil
	}
	if err := l.tr.Send(to, msgs); err != nil {
		return fmt.Errorf("%w: %v", server.ErrUnreachable, err)
	}
	return nil
}

// forwarder is the node's server.Forwarder over the peer transport.
type forwarder struct{ tr *transport.Transport }

// RTT is the peer link's measured round-trip time (server.Distancer):
// routing forwards only to near homes.
func (f forwarder) RTT(id protocol.NodeID) (time.Duration, bool) { return f.tr.RTT(id) }

func (f forwarder) Forward(ctx context.Context, to protocol.NodeID, req server.Request) (protocol.State, error) {
	if req.Change != nil {
		return protocol.State{}, fmt.Errorf("%w: a change function cannot cross the network", server.ErrUnreachable)
	}
	s, err := f.tr.Forward(ctx, to, req.Op)
	if errors.Is(err, transport.ErrUnreachable) {
		return s, fmt.Errorf("%w: %v", server.ErrUnreachable, err)
	}
	return s, err
}

// peerLinks gives the transport the peers of a new membership: first the
// names their certificates must carry, so that a new member's first
// connections are not refused.
type peerLinks struct{ tr *transport.Transport }

func (p peerLinks) SetPeers(peers, names map[protocol.NodeID]string) {
	p.tr.SetNames(names)
	_ = p.tr.SetPeers(peers) // validated with the membership
}
