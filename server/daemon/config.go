// Package daemon assembles one networked caspaxos node: durable Pebble
// storage, the gRPC peer transport, the node.Node, and the client
// services (gRPC and HTTP/JSON on one address, plus Prometheus metrics).
// `caspaxos serve` is a thin command around Start.
package daemon

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/node"
)

// Member is a node of the initial cluster.
type Member struct {
	Name     string
	PeerAddr string
}

// Config configures a node. Durations are wall-clock; zero means the default.
type Config struct {
	// Name is this node's name; it must be one of Cluster's.
	Name string
	// DataDir holds the node's durable state.
	DataDir string
	// ClientAddr serves the client API (gRPC and HTTP/JSON).
	ClientAddr string
	// PeerAddr serves the peer transport; it must be this node's address in Cluster.
	PeerAddr string
	// Cluster lists the initial members (bootstrap only: once the node
	// has a persisted membership, that wins).
	Cluster []Member
	// Join starts a node that waits to be added with `caspaxos members
	// add` (no --cluster needed): its ID comes from its name and a fresh
	// incarnation of its data directory (membership.go).
	Join bool
	// PrepareQuorum and AcceptQuorum default to a majority of Cluster.
	PrepareQuorum int
	AcceptQuorum  int
	// Limits bound keys and values (default kv.DefaultLimits).
	Limits kv.Limits
	// RequestTimeout bounds each client request (default 5s).
	RequestTimeout time.Duration
	// AttemptTimeout, ReadTimeout, ReadNearTimeout: see
	// proposer.Config (defaults 500ms, 100ms, 10ms).
	AttemptTimeout  time.Duration
	ReadTimeout     time.Duration
	ReadNearTimeout time.Duration
	// GatherWindow: see proposer.Config (default 1ms; negative: off).
	GatherWindow time.Duration
	// Heartbeat and DeadAfter: see transport.Config (defaults 50ms, 300ms).
	Heartbeat time.Duration
	DeadAfter time.Duration
	// MaxInflightRequests and MaxClientConns bound the client operations
	// the node runs at once and its client connections (see
	// clientapi.AdmissionConfig; defaults
	// clientapi.DefaultMaxInflightRequests and DefaultMaxClientConns).
	MaxInflightRequests int
	MaxClientConns      int
	// HTTP bounds how long an HTTP client may hold a connection (defaults:
	// clientapi.HTTPTimeouts).
	HTTP clientapi.HTTPTimeouts
	// Space sets when the node refuses new writes with no_space because its
	// disk is nearly full or its store is over a quota (node.SpaceConfig;
	// default: refuse below 256 MiB free, no quota).
	Space node.SpaceConfig
	// GC tunes deletion GC, which runs by default (gc.go).
	GC     GCOptions
	Logger *slog.Logger
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
// agrees on IDs without coordination and a name keeps its ID across restarts.
func NodeID(name string) protocol.NodeID {
	h := fnv.New64a()
	h.Write([]byte(name))
	id := h.Sum64() &^ (1 << 63) // keep IDs readable as int64 in JSON tools
	if id == 0 {
		id = 1
	}
	return protocol.NodeID(id)
}

// Validate checks the configuration and fills in defaults; the error lists
// every problem, each saying what to fix.
func (c *Config) Validate() error {
	var errs []error
	need := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	need(c.Name != "", "--name is required")
	need(c.DataDir != "", "--data-dir is required")
	need(c.Join || len(c.Cluster) > 0, "--cluster is required (e.g. n1=127.0.0.1:7080,n2=127.0.0.1:7081,n3=127.0.0.1:7082)")
	for _, a := range []struct{ flag, addr string }{{"--client-addr", c.ClientAddr}, {"--peer-addr", c.PeerAddr}} {
		_, _, err := net.SplitHostPort(a.addr)
		need(err == nil, "%s %q is not HOST:PORT", a.flag, a.addr)
	}
	if !c.Join {
		errs = append(errs, c.checkMembers()...)
	}
	if c.Limits == (kv.Limits{}) {
		c.Limits = kv.DefaultLimits
	}
	need(c.Limits.MaxKeyBytes > 0 && c.Limits.MaxValueBytes > 0, "limits must be positive")
	need(c.Limits.MaxValueBytes <= 16<<20, "--max-value-bytes %d is above 16 MiB", c.Limits.MaxValueBytes)
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	need(c.RequestTimeout > 0, "--request-timeout must be positive")
	need(c.MaxInflightRequests >= 0, "--max-inflight-requests must not be negative")
	need(c.MaxClientConns >= 0, "--max-client-conns must not be negative")
	need(c.Space.QuotaBytes >= 0, "--quota-bytes must not be negative (0: no quota)")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("caspaxos/daemon: invalid configuration: %s", strings.Join(msgs, "; "))
	}
	return nil
}

func (c *Config) checkMembers() []error {
	var errs []error
	names := map[string]bool{}
	ids := map[protocol.NodeID]string{}
	self := false
	for _, m := range c.Cluster {
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("--cluster names %q twice", m.Name))
		}
		names[m.Name] = true
		if other, ok := ids[NodeID(m.Name)]; ok {
			errs = append(errs, fmt.Errorf("--cluster names %q and %q hash to the same node ID; rename one", m.Name, other))
		}
		ids[NodeID(m.Name)] = m.Name
		if m.Name == c.Name {
			self = true
			if m.PeerAddr != c.PeerAddr {
				errs = append(errs, fmt.Errorf("--cluster gives %s the peer address %s but --peer-addr is %s", m.Name, m.PeerAddr, c.PeerAddr))
			}
		}
	}
	if c.Name != "" && len(c.Cluster) > 0 && !self {
		errs = append(errs, fmt.Errorf("--name %q is not in --cluster", c.Name))
	}
	return errs
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
