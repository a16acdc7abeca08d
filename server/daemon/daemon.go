package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/internal/connsplit"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/identity"
	"github.com/caspaxos/caspaxos/server/lease"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/metrics"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/peerapi"
	"github.com/caspaxos/caspaxos/server/status"
	"github.com/caspaxos/caspaxos/server/ui"
	"github.com/caspaxos/caspaxos/server/watch"
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
	lister    *list.Lister       // list.go
	hints     *watch.Publisher   // watch.go: this node's acceptor's hint streams
	watches   *watch.Hub         // watch.go: this node's watchers
	members   *membership.Keeper // membership.go
	ctl       *membership.Controller
	record    *membership.Record   // WAS-MEMBER and REMOVED
	standing  *membership.Standing // removal and hold probes
	admin     *peerapi.AdminClients
	addrBook  clientAddrBook            // clientaddrs.go: the peers' client addresses
	gc        atomic.Pointer[gc.Runner] // gc.go; nil when disabled
	reaper    *lease.Reaper             // expires leases (server/lease)
	peerSrv   *grpc.Server
	grpcSrv   *grpc.Server
	httpSrv   *http.Server
	etcdSrv   *grpc.Server // etcd.go; nil when off
	etcdLis   net.Listener
	consulSrv *http.Server // consul.go; nil when off
	consulLis net.Listener
	split     *connsplit.Listener
	grpcAPI   *clientapi.GRPC
	admission *clientapi.Admission
	authz     *auth.Guard // the client services' authorization
	metrics   *metrics.Metrics
	status    *status.Sampler // status.go
	log       *slog.Logger
	stopOnce  sync.Once
	done      chan struct{}
	fatal     chan struct{}
	fatalErr  error
	fatalOnce sync.Once
	guard     *identity.Guard // the amnesia guard: the node serves once it opens
	tls       tlsSources      // tls.go
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
		done: make(chan struct{}), fatal: make(chan struct{})}
	d.store, err = storage.OpenPebble(cfg.DataDir, storage.PebbleOptions{Logger: d.log})
	if err != nil {
		return nil, err
	}
	d.dir = d.store.Dir()
	if err = d.loadTLS(); err != nil {
		d.store.Close()
		return nil, err
	}
	d.admin = &peerapi.AdminClients{TLS: d.tls.peer}
	if err = d.seedAuthSeen(); err != nil {
		d.store.Close()
		return nil, err
	}
	// The guard reads the membership from Start on, once the Keeper exists.
	d.guard, err = identity.New(identity.Config{Name: cfg.Name, Join: cfg.Join, DataDir: cfg.DataDir, PeerAddr: cfg.PeerAddr},
		d.dir, d.admin, func() membership.Membership { return d.members.Membership() }, d.stopFatal, d.log)
	if err != nil {
		d.store.Close()
		return nil, err
	}
	d.id = d.guard.ID()
	d.admission, err = clientapi.NewAdmission(cfg.Admission)
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
	d.status.Start()
	d.standing.Start()
	d.log.Info("caspaxos node started", "node_id", uint64(d.id), "client_addr", clientLis.Addr().String(),
		"peer_addr", peerLis.Addr().String(), "data_dir", cfg.DataDir, "members", len(cfg.Cluster),
		"incarnation", d.guard.Incarnation(), "client_tls", d.tls.client != nil, "peer_tls", d.tls.peer != nil)
	for _, w := range d.warnings() {
		d.log.Error("INSECURE: "+w, "peer_addr", cfg.PeerAddr)
	}
	d.guard.Start(d.startServing)
	return d, nil
}

// startServing lets the node answer its peers' protocol messages and
// forwards and its clients, and starts deletion GC. The guard calls it: at
// once on a node whose identity the cluster knows, else once the members
// confirmed it (server/identity).
func (d *Daemon) startServing() {
	d.relay.node.Store(d.node)
	if gc := d.gc.Load(); gc != nil {
		gc.Start()
	}
	d.reaper.Start()
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
	nc.Proposer.Idempotency = d.cfg.Idempotency
	node, err := node.New(nc, d.store, &links{self: d.id, relay: d.relay, tr: tr}, forwarder{tr: tr}, d.log)
	if err != nil {
		tr.Close()
		return err
	}
	d.node = node
	d.record = membership.NewRecord(d.dir)
	d.members = membership.NewKeeper(node, st, peerLinks{tr}, d.saveState)
	d.node.SetMembers(st.Membership.IDs())
	if d.lister, err = d.newLister(); err != nil {
		tr.Close()
		return err
	}
	if err = d.startWatch(); err != nil {
		tr.Close()
		return err
	}
	cc := d.cfg.Membership
	cc.Self = membership.Member{Name: d.cfg.Name, ID: d.id, PeerAddr: d.cfg.PeerAddr}
	d.ctl, err = membership.NewController(cc, d.admin, node.Proposer(), changeStore{d.dir},
		d.members.Membership, d.log)
	if err == nil {
		t := d.cfg.Timers
		d.standing, err = membership.NewStanding(membership.StandingConfig{Self: cc.Self, WatchInterval: t.WatchInterval,
			ProbeInterval: t.RemovedProbeInterval, RemovedGrace: t.RemovedGrace, InfoTimeout: t.MemberInfoTimeout},
			d.members, d.ctl, d.record, d.admin, d.log)
	}
	if err == nil {
		err = d.ctl.Resume()
	}
	if err == nil {
		err = d.standing.Check()
	}
	if err == nil {
		err = d.startGC()
	}
	if err == nil {
		lc := d.cfg.Lease
		lc.MaxClockSkew = d.cfg.Idempotency.MaxClockSkew
		d.reaper, err = lease.New(lc, d.store, node, time.Now, d.log)
	}
	if err != nil {
		node.Stop()
		tr.Close()
		return err
	}
	ac := d.cfg.Auth
	ac.Now = nil
	if d.authz, err = auth.New(ac, authRegisters{d}); err != nil {
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
	d.status = d.newStatus() // started once the node serves
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
	// gRPC and HTTP share the client address: told apart by their first
	// bytes and, for HTTP/2, by the first request (connsplit.NewH2), or
	// over TLS by ALPN (tls.go). (gRPC's net/http bridge would avoid
	// this, at a large cost in throughput.)
	split, err := d.clientListener(d.admission.Listener(clientLis))
	if err != nil {
		return err
	}
	d.split = split
	if d.etcdSrv, d.etcdLis, err = d.serveEtcd(); err != nil {
		return err
	}
	if d.consulSrv, d.consulLis, err = d.serveConsul(); err != nil {
		return err
	}
	d.peerSrv = grpc.NewServer(d.tr.ServerOptions()...)
	peerapi.Register(d.peerSrv, adminNode{d: d}, d.node)
	peerapi.RegisterWatch(d.peerSrv, d.hints)
	d.tr.Serve(peerLis, d.peerSrv)

	opts := append(clientapi.KeepaliveOptions(),
		d.grpcRecvLimit())
	if d.tls.client != nil {
		// TLS ends in the listener; a call's peer.FromContext(ctx).AuthInfo
		// is still a credentials.TLSInfo with the client's certificate.
		opts = append(opts, grpc.Creds(certs.Terminated()))
	}
	d.grpcSrv = grpc.NewServer(opts...)
	d.grpcAPI = clientapi.RegisterGRPC(d.grpcSrv, clientapi.GRPCConfig{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout,
		Admission: d.admission, Guard: d.authz, Warnings: d.warnings, Watches: d}, d)
	d.httpSrv = clientapi.NewHTTPServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout,
		Metrics: d.metrics.Handler(), Logger: d.log, Admission: d.admission, Guard: d.authz, Warnings: d.warnings,
		Status: d.statusJSON, UI: ui.Handler(), Watches: d, AllowedHosts: d.allowedHosts()}, d), d.cfg.HTTP, d.log)
	grpcLis := d.split.Match
	if d.tls.client == nil {
		// Plain HTTP/2 is gRPC or an HTTP client speaking h2c with prior
		// knowledge: told apart by the first request's content-type.
		h2 := connsplit.NewH2(d.split.Match, d.cfg.Timers.SniffTimeout, clientapi.IsGRPC)
		grpcLis = h2.Match
		go func() { _ = d.httpSrv.Serve(h2.Other) }()
	}
	go func() { _ = d.grpcSrv.Serve(grpcLis) }()
	go func() { _ = d.httpSrv.Serve(d.split.Other) }()
	return nil
}

// Fatal is closed when the node stopped for good because its storage
// failed (fail-stop, PROTOCOL.md §10), or because the cluster does not know
// its data directory (server/identity); FatalErr then says why. The process
// must exit: the node answers no request any more.
func (d *Daemon) Fatal() <-chan struct{} { return d.fatal }

// FatalErr is the error that closed Fatal.
func (d *Daemon) FatalErr() error { return d.fatalErr }

// Removed is closed when a membership change removed this node from the
// cluster: it had been a member, the membership it uses no longer lists it,
// the change is over (or the node has been outside the membership for
// Timers.RemovedGrace) and no change runs on its own controller; or a peer
// uses a newer membership that does not list it (membership.Standing). The
// node has no part left in the cluster, and the process should stop (as
// etcd's removed members do), instead of serving clients from outside it.
func (d *Daemon) Removed() <-chan struct{} { return d.standing.Removed() }

// watch closes Fatal when the acceptor service stops after a failed write.
func (d *Daemon) watch() {
	t := time.NewTicker(d.cfg.Timers.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
			if err := d.node.Err(); err != nil {
				d.stopFatal(fmt.Errorf("storage failed (fail-stop): %w", err))
				return
			}
		}
	}
}

// ClientAddr is the address the client API listens on (with the port the
// system chose, if the configuration said port 0).
func (d *Daemon) ClientAddr() string { return d.split.Addr().String() }

// Stop stops serving, answers what is in flight and closes the storage.
func (d *Daemon) Stop() error {
	var err error
	d.stopOnce.Do(func() {
		d.guard.Stop()
		d.standing.Stop() // the hold probe frees nothing more
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timers.StopTimeout)
		defer cancel()
		// Peers stop forwarding here first, while this node still answers
		// the forwards it has: a graceful stop leaves no unknown outcomes.
		leave, cancelLeave := context.WithTimeout(ctx, d.cfg.Timers.LeaveTimeout)
		d.tr.Leave(leave)
		cancelLeave()
		if d.watches != nil {
			d.watches.Close() // watch streams and long polls end first: they never go idle
		}
		_ = d.httpSrv.Shutdown(ctx)
		if d.consulSrv != nil {
			_ = d.consulSrv.Shutdown(ctx) // consul.go
		}
		if d.etcdSrv != nil {
			stopGRPC(ctx, d.etcdSrv) // etcd.go
		}
		d.grpcAPI.Drain() // Batch streams end once their ops are answered
		stopGRPC(ctx, d.grpcSrv)
		// Forwards taken before the peers learnt of the leave run to the
		// end here, and their answers leave, before the node stops. A
		// budget of its own: slow clients may have used up ctx.
		quiesce, cancelQuiesce := context.WithTimeout(context.Background(), d.cfg.Timers.QuiesceTimeout)
		d.tr.Quiesce(quiesce)
		cancelQuiesce()
		d.split.Close()
		if gc := d.gc.Load(); gc != nil && d.guard.Serving() {
			gc.Stop()
		}
		if d.guard.Serving() {
			d.reaper.Stop()
		}
		d.ctl.Stop()
		d.status.Stop()
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
	if err == nil && d.watches != nil {
		d.watches.Publish(op.Key, s) // chosen: an accept quorum answered it (or a linearizable read)
	}
	if id, ok := kv.LeaseIDOf(op.Key); ok && err == nil && op.Kind == kv.OpLeaseRevoke && d.reaper != nil {
		// As etcd does, a revoke answers once the keys attached to the
		// lease are deleted, as far as this node's index knows them;
		// every node's periodic sweep deletes any it missed.
		d.reaper.SweepLease(id)
	}
	d.metrics.Observe(op.Kind, err, time.Since(start))
	return s, err
}

// authRegisters is the Guard's way to the auth state's register: the
// node itself, past the client API (which refuses the reserved keys) and
// past the request metrics (auth's own reads are not client operations).
type authRegisters struct{ d *Daemon }

func (a authRegisters) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	if err := a.d.Health(ctx); err != nil {
		return protocol.State{}, fmt.Errorf("%w: %v", kv.ErrNoQuorum, err)
	}
	return a.d.node.Do(ctx, op)
}

// Local is the auth state's register as this node's acceptor holds it.
func (a authRegisters) Local(key string) (protocol.State, error) {
	reg, err := a.d.store.Get(key)
	return reg.State, err
}

// seedAuthSeen runs before the identity guard makes the directory's
// identity: on the first start of a member of a new cluster (no identity
// yet, no --join) it keeps "auth disabled" as if read from a quorum. No
// auth state exists anywhere in a cluster being made, and this lets its
// nodes release held ones before they first read it (auth.Seen). A
// member re-created without its data directory in an older cluster is
// stopped by the identity guard once a peer answers; until then, this is
// the one case where a node may take auth as disabled without having read
// it (docs/security.md). A joining node, or any later start, keeps no such
// thing: it refuses what needs authorization until its first quorum read.
func (d *Daemon) seedAuthSeen() error {
	if d.cfg.Join {
		return nil
	}
	for _, f := range []storage.StateFile{storage.IdentityFile, storage.IncarnationFile, storage.AuthSeenFile} {
		if b, err := d.dir.ReadState(f); err != nil || b != nil {
			return err
		}
	}
	return authRegisters{d}.SetSeen(auth.Seen{})
}

// Seen reads what the Guard kept of its last quorum read (AUTH-SEEN).
func (a authRegisters) Seen() (auth.Seen, bool, error) {
	b, err := a.d.dir.ReadState(storage.AuthSeenFile)
	if err != nil || b == nil {
		return auth.Seen{}, false, err
	}
	var s auth.Seen
	if err := json.Unmarshal(b, &s); err != nil {
		return auth.Seen{}, false, fmt.Errorf("caspaxos/daemon: %s: %w", storage.AuthSeenFile, err)
	}
	return s, true, nil
}

// SetSeen keeps what a quorum read of the auth state said (AUTH-SEEN).
func (a authRegisters) SetSeen(s auth.Seen) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return a.d.dir.WriteState(storage.AuthSeenFile, b)
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

// grpcRecvLimit bounds a client gRPC message (the client port's and etcd's
// API): one operation of the largest key and value, and never below
// minGRPCRecvBytes.
func (d *Daemon) grpcRecvLimit() grpc.ServerOption {
	return grpc.MaxRecvMsgSize(max(d.cfg.Limits.MaxValueBytes+d.cfg.Limits.MaxKeyBytes+grpcOpOverheadBytes, minGRPCRecvBytes))
}
