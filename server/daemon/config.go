// Package daemon assembles one networked caspaxos node: durable Pebble
// storage, the gRPC peer transport, the node.Node, and the client
// services (gRPC and HTTP/JSON on one address, plus Prometheus metrics).
// `caspaxos serve` is a thin command around Start.
package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/gc"
	"github.com/caspaxos/caspaxos/server/identity"
	"github.com/caspaxos/caspaxos/server/lease"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/status"
	"github.com/caspaxos/caspaxos/server/watch"
	"github.com/caspaxos/caspaxos/transport"
)

// Member is a node of the initial cluster.
type Member struct {
	Name     string
	PeerAddr string
}

// Config configures a node. Its parts nest the configurations of the
// components the daemon assembles, each with that component's defaults
// (DefaultConfig); a zero field means the default, as in each component.
// Durations are wall-clock.
type Config struct {
	// Name is this node's name; it must be one of Cluster's.
	Name string
	// DataDir holds the node's durable state.
	DataDir string
	// ClientAddr serves the client API (gRPC and HTTP/JSON).
	ClientAddr string
	// PeerAddr serves the peer transport; it must be this node's address in Cluster.
	PeerAddr string
	// EtcdAddr, if set, serves etcd's v3 gRPC API (server/etcdapi,
	// docs/etcd.md) with the client port's TLS and permissions; empty: off.
	EtcdAddr string
	// ConsulAddr, if set, serves Consul's KV HTTP API (server/consulapi,
	// docs/consul.md) with the client port's TLS and permissions; empty: off.
	ConsulAddr string
	// Cluster lists the initial members (bootstrap only: once the node
	// has a persisted membership, that wins).
	Cluster []Member
	// Join starts a node that waits to be added with `caspaxos members
	// add` (no Cluster needed): its ID comes from its name and a fresh
	// incarnation of its data directory (membership.go).
	Join bool
	// PrepareQuorum and AcceptQuorum default to a majority of Cluster.
	PrepareQuorum int
	AcceptQuorum  int
	// Limits bound keys and values (default kv.DefaultLimits; MaxValueBytes
	// at most MaxValueBytesLimit). The client API, the node and the peer
	// transport all enforce them (Transport.Limits is replaced by them).
	Limits kv.Limits
	// RequestTimeout bounds each client request (default
	// kv.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Node tunes the node: its proposer (Node.Proposer), its acceptor
	// service (Node.Acceptor) and when it refuses writes for lack of disk
	// space (Node.Space). The node's identity (ID, Members, Acceptors,
	// Deleted and the proposer's and acceptor's IDs) is the daemon's:
	// whatever those fields hold is replaced.
	Node node.Config
	// Transport tunes the peer links (heartbeat, liveness, queues and
	// frames). Self, Peers, Limits, TLS and Logger are the daemon's.
	Transport transport.Config
	// Admission bounds the client operations the node runs at once and
	// its client connections.
	Admission clientapi.AdmissionConfig
	// List bounds a listing's work: the value size over which a listing
	// leaves values out (List.MaxValueBytes), the keys per round and the
	// bytes per acceptor's reply.
	List list.Config
	// Watch tunes watches (server/watch): the resync timer, the re-reads
	// of unconfirmed hints, the bounds on hints and watchers. Zero fields
	// take watch.DefaultConfig's.
	Watch watch.Config
	// HTTP bounds how long an HTTP client may hold a connection.
	HTTP clientapi.HTTPTimeouts
	// HTTPAllowedHosts are the host names a browser's request to the
	// client port over plain HTTP may name in its Host header, besides IP
	// addresses, localhost, names under .localhost and the host names of
	// ClientAddr and of the client address the node gives its members
	// (the DNS rebinding guard: clientapi.HTTPConfig.AllowedHosts); "*":
	// any.
	HTTPAllowedHosts []string
	// Auth tunes authorization (package auth): the tokens' life and the
	// staleness bound of each node's cached users and roles. Now is the
	// daemon's (the wall clock). Auth is off until `caspaxos auth enable`.
	Auth auth.Config
	// TLS names the certificate files of the client and peer ports
	// (tls.go); none: both ports are plain TCP.
	TLS TLSConfig
	// GC tunes deletion GC, which runs by default (gc.go).
	GC GCOptions
	// Idempotency is the window of exactly-once writes (kv/request.go):
	// how long a key remembers a write's request ID, and the bound on
	// clock skew between nodes and the clients that stamp request IDs.
	// The node's proposer and GC both use it; every node should have the
	// same.
	Idempotency kv.Idempotency
	// Lease tunes the node's lease reaper (server/lease); its
	// MaxClockSkew is Idempotency.MaxClockSkew.
	Lease lease.Config
	// Membership tunes the membership change controller; Self is the
	// daemon's.
	Membership membership.ControllerConfig
	// Status tunes the figures of GET /v1/status (server/status).
	Status status.Config
	// Timers are the daemon's own: its stop and its watch for removal.
	Timers Timers
	Logger *slog.Logger
}

// Timers are the daemon's own durations. Zero or negative means the
// default (DefaultTimers).
type Timers struct {
	// StopTimeout bounds a graceful Stop's wait for the client services:
	// the HTTP server's shutdown and the gRPC server's graceful stop
	// (Batch streams draining). Past it, they are cut off.
	StopTimeout time.Duration
	// LeaveTimeout bounds, within StopTimeout, the wait for the peers to
	// acknowledge that this node leaves (they stop forwarding to it).
	LeaveTimeout time.Duration
	// QuiesceTimeout bounds the wait, after the client services stopped,
	// for the forwards peers sent before they learnt of the leave to be
	// answered. A budget of its own: slow clients may have used up
	// StopTimeout.
	QuiesceTimeout time.Duration
	// WatchInterval is how often the node checks whether its storage
	// failed (it then stops, fail-stop) and whether the membership it uses
	// still lists it.
	WatchInterval time.Duration
	// RemovedProbeInterval is how often a member asks its peers whether
	// their membership, if newer than its own, still lists it: a node
	// removed while it was down learns of it only from them. The same
	// tick asks the controller of a change that holds this node whether
	// the change still runs.
	RemovedProbeInterval time.Duration
	// RemovedGrace bounds how long a node outside the membership waits
	// for the change that removed it to end before it reports itself
	// removed (the change's last call to it may never come: it is not
	// required).
	RemovedGrace time.Duration
	// MemberInfoTimeout bounds one question to a peer during those probes,
	// and one for its client address (ClientAddrMaxAge).
	MemberInfoTimeout time.Duration
	// JoinerInfoTimeout bounds the question to a node being added for its
	// name and ID, before the change starts.
	JoinerInfoTimeout time.Duration
	// ClientAddrMaxAge is how long the member listing shows a peer's
	// client address, learnt from its Admin.Info answer, before it asks
	// again (each question bounded by MemberInfoTimeout).
	ClientAddrMaxAge time.Duration
	// SniffTimeout bounds the wait for a new client connection's first
	// bytes, which tell gRPC (HTTP/2) from HTTP/1.
	SniffTimeout time.Duration
}

// DefaultTimers returns Timers's defaults.
func DefaultTimers() Timers {
	return Timers{
		StopTimeout:          5 * time.Second,
		LeaveTimeout:         time.Second,
		QuiesceTimeout:       3 * time.Second,
		WatchInterval:        100 * time.Millisecond,
		RemovedProbeInterval: 2 * time.Second,
		RemovedGrace:         10 * time.Second,
		MemberInfoTimeout:    time.Second,
		JoinerInfoTimeout:    5 * time.Second,
		ClientAddrMaxAge:     30 * time.Second,
		SniffTimeout:         10 * time.Second,
	}
}

// MaxValueBytesLimit is the largest Limits.MaxValueBytes a node accepts:
// a value travels whole in one peer frame, which
// transport.Config.MaxRecvFrameBytes bounds (64 MiB by default).
const MaxValueBytesLimit = 16 << 20

// DefaultConfig returns the defaults of every tunable part of Config: each
// component's own defaults. The identities (Name, DataDir, the addresses,
// Cluster) are the caller's.
func DefaultConfig() Config {
	return Config{
		Limits:         kv.DefaultLimits,
		RequestTimeout: kv.DefaultRequestTimeout,
		Node:           node.DefaultConfig(),
		Transport:      transport.DefaultConfig(),
		Admission:      clientapi.DefaultAdmissionConfig(),
		HTTP:           clientapi.DefaultHTTPTimeouts(),
		List:           list.DefaultConfig(),
		Watch:          watch.DefaultConfig(),
		Auth:           auth.DefaultConfig(),
		GC:             gc.DefaultOptions(),
		Idempotency:    kv.DefaultIdempotency(),
		Lease:          lease.DefaultConfig(),
		Membership:     membership.DefaultControllerConfig(),
		Status:         status.DefaultConfig(),
		Timers:         DefaultTimers(),
	}
}

// ParseCluster parses "n1=host:port,n2=host:port,...".
func ParseCluster(s string) ([]Member, error) {
	var out []Member
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, addr, ok := strings.Cut(part, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("caspaxos/daemon: cluster member %q: want NAME=HOST:PORT", part)
		}
		out = append(out, Member{Name: name, PeerAddr: addr})
	}
	return out, nil
}

// NodeID derives a member's node ID from its name, so that every node
// agrees on IDs without coordination and a name keeps its ID across
// restarts (identity.NodeID).
func NodeID(name string) protocol.NodeID { return identity.NodeID(name) }

// Field names a field of Config in a Problem, as its path
// ("Limits.MaxValueBytes").
type Field string

// Problem is one thing wrong with a Config: a message whose arguments
// include the Fields it names, so that a caller (the command line) can
// name them its own way.
type Problem struct {
	format string
	args   []any
}

func problem(format string, args ...any) Problem { return Problem{format: format, args: args} }

// Text is the problem with every Field it names written by name.
func (p Problem) Text(name func(Field) string) string {
	args := slices.Clone(p.args)
	for i, a := range args {
		if f, ok := a.(Field); ok {
			args[i] = name(f)
		}
	}
	return fmt.Sprintf(p.format, args...)
}

// ConfigError is every problem Validate found in a Config, or an address
// Start could not listen on.
type ConfigError struct{ Problems []Problem }

// Error names the fields as Config does.
func (e *ConfigError) Error() string { return e.Text(func(f Field) string { return string(f) }) }

// Text is the error with every Field written by name.
func (e *ConfigError) Text(name func(Field) string) string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Text(name)
	}
	return "caspaxos/daemon: invalid configuration: " + strings.Join(msgs, "; ")
}

// Validate checks the configuration and fills in the defaults of its own
// fields (the components fill theirs when the daemon builds them). The
// error, a *ConfigError, lists every problem, each saying what to fix.
func (c *Config) Validate() error {
	var probs []Problem
	need := func(ok bool, format string, args ...any) {
		if !ok {
			probs = append(probs, problem(format, args...))
		}
	}
	need(c.Name != "", "%s is required", Field("Name"))
	need(c.DataDir != "", "%s is required", Field("DataDir"))
	need(c.Join || len(c.Cluster) > 0, "%s is required unless %s (e.g. n1=127.0.0.1:7080,n2=127.0.0.1:7081,n3=127.0.0.1:7082)", Field("Cluster"), Field("Join"))
	for _, a := range []struct {
		field Field
		addr  string
	}{{"ClientAddr", c.ClientAddr}, {"PeerAddr", c.PeerAddr}, {"EtcdAddr", c.EtcdAddr}, {"ConsulAddr", c.ConsulAddr}} {
		if a.addr == "" && (a.field == "EtcdAddr" || a.field == "ConsulAddr") {
			continue
		}
		_, _, err := net.SplitHostPort(a.addr)
		need(err == nil, "%s %q is not HOST:PORT", a.field, a.addr)
	}
	if !c.Join {
		probs = append(probs, c.checkMembers()...)
	}
	probs = append(probs, c.TLS.check()...)
	def := DefaultConfig()
	if c.Limits == (kv.Limits{}) {
		c.Limits = def.Limits
	}
	need(c.Limits.MaxKeyBytes > 0 && c.Limits.MaxValueBytes > 0, "%s and %s must be positive", Field("Limits.MaxKeyBytes"), Field("Limits.MaxValueBytes"))
	need(c.Limits.MaxValueBytes <= MaxValueBytesLimit, "%s %d is above %d MiB", Field("Limits.MaxValueBytes"), c.Limits.MaxValueBytes, MaxValueBytesLimit>>20)
	if c.RequestTimeout == 0 {
		c.RequestTimeout = def.RequestTimeout
	}
	need(c.RequestTimeout > 0, "%s must be positive", Field("RequestTimeout"))
	need(c.Admission.MaxInflightRequests >= 0, "%s must not be negative", Field("Admission.MaxInflightRequests"))
	need(c.Admission.MaxConns >= 0, "%s must not be negative", Field("Admission.MaxConns"))
	need(c.Auth.TokenTTL >= 0 && c.Auth.Staleness >= 0, "%s and %s must not be negative", Field("Auth.TokenTTL"), Field("Auth.Staleness"))
	need(c.Node.Space.QuotaBytes >= 0, "%s must not be negative (0: no quota)", Field("Node.Space.QuotaBytes"))
	c.Timers.setDefaults(def.Timers)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(probs) > 0 {
		return &ConfigError{Problems: probs}
	}
	return nil
}

func (t *Timers) setDefaults(def Timers) {
	for _, d := range []struct{ v, def *time.Duration }{
		{&t.StopTimeout, &def.StopTimeout},
		{&t.LeaveTimeout, &def.LeaveTimeout},
		{&t.QuiesceTimeout, &def.QuiesceTimeout},
		{&t.WatchInterval, &def.WatchInterval},
		{&t.RemovedProbeInterval, &def.RemovedProbeInterval},
		{&t.RemovedGrace, &def.RemovedGrace},
		{&t.MemberInfoTimeout, &def.MemberInfoTimeout},
		{&t.JoinerInfoTimeout, &def.JoinerInfoTimeout},
		{&t.ClientAddrMaxAge, &def.ClientAddrMaxAge},

		{&t.SniffTimeout, &def.SniffTimeout},
	} {
		if *d.v <= 0 {
			*d.v = *d.def
		}
	}
}

func (c *Config) checkMembers() []Problem {
	var probs []Problem
	names := map[string]bool{}
	ids := map[protocol.NodeID]string{}
	self := false
	for _, m := range c.Cluster {
		if names[m.Name] {
			probs = append(probs, problem("%s names %q twice", Field("Cluster"), m.Name))
		}
		names[m.Name] = true
		if other, ok := ids[NodeID(m.Name)]; ok {
			probs = append(probs, problem("%s names %q and %q hash to the same node ID; rename one", Field("Cluster"), m.Name, other))
		}
		ids[NodeID(m.Name)] = m.Name
		if m.Name == c.Name {
			self = true
			if m.PeerAddr != c.PeerAddr {
				probs = append(probs, problem("%s gives %s the peer address %s but %s is %s", Field("Cluster"), m.Name, m.PeerAddr, Field("PeerAddr"), c.PeerAddr))
			}
		}
	}
	if c.Name != "" && len(c.Cluster) > 0 && !self {
		probs = append(probs, problem("%s %q is not in %s", Field("Name"), c.Name, Field("Cluster")))
	}
	return probs
}

// acceptors is the protocol configuration of the initial cluster.
func (c *Config) acceptors() (protocol.Config, error) {
	if c.Join {
		return protocol.Config{}, nil // a joining node is given its configuration
	}
	ids := make([]protocol.NodeID, 0, len(c.Cluster))
	for _, m := range c.Cluster {
		ids = append(ids, NodeID(m.Name))
	}
	slices.Sort(ids)
	cfg := protocol.Majority(1, ids...)
	if c.PrepareQuorum != 0 {
		cfg.PrepareQuorum = c.PrepareQuorum
	}
	if c.AcceptQuorum != 0 {
		cfg.AcceptQuorum = c.AcceptQuorum
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("caspaxos/daemon: invalid configuration: quorums: %w", err)
	}
	return cfg, nil
}
