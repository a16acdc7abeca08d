// Package client is the Go client of caspaxos.
//
// A Client talks gRPC to one or more nodes; any node serves any key. Its KV
// calls share one Batch stream per node, so that many concurrent calls
// travel in few messages. Calls take a context first and return the typed
// errors of this package:
//
//   - ErrNotFound, *VersionMismatchError (ErrVersionMismatch),
//     ErrNotAnInteger, ErrOverflow, ErrTooLarge, ErrBadRequest: the request
//     was answered and refused; nothing changed.
//   - ErrNoQuorum: the cluster could not reach a quorum; nothing changed.
//   - ErrOverloaded: the node refused the request, at its bound of requests
//     in flight; nothing changed, and it may be retried.
//   - ErrUnknownOutcome: a write may or may not have taken effect.
//   - ErrUnauthenticated, ErrPermissionDenied: auth is enabled and the
//     call's user could not be logged in, or lacks the permission; nothing
//     changed (auth.go).
//   - ErrUnavailable: no endpoint could be reached.
//
// Failover: a read moves on to the next endpoint after any connection error.
// A write moves on only if it provably never left (the endpoint's connection
// was down before the call); if a connection breaks while a write is in
// flight, the write returns ErrUnknownOutcome instead of being sent again.
// A request refused as overloaded (nothing applied) moves on at once. An
// endpoint that let a call's deadline pass unanswered, or refused one as
// overloaded, is tried last for SuspectFor (suspect.go).
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/kv"
)

// Config configures a Client.
type Config struct {
	// Endpoints are gRPC addresses (host:port) of nodes; at least one.
	Endpoints []string
	// DialTimeout bounds how long a call waits for a connection to an
	// endpoint before trying the next (default 2s).
	DialTimeout time.Duration
	// NoRouting sends every call to the preferred endpoint first (the one
	// that last worked) instead of sending writes to their key's home node
	// (route.go).
	NoRouting bool
	// RouteRefresh is how often the client asks the endpoints which member
	// each is, for routing (default 10s).
	RouteRefresh time.Duration
	// SuspectFor is how long an endpoint that let a call's deadline pass
	// without an answer, or refused one as overloaded, is tried last
	// (default 5s; suspect.go).
	SuspectFor time.Duration
	// KeepaliveTime and KeepaliveTimeout: the client pings a connection
	// silent for KeepaliveTime and closes it if no answer comes within
	// KeepaliveTimeout (defaults 10s, gRPC's least, and 5s), so that a
	// node cut off without a reset is found dead.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// Username and Password, if Username is set, log the client in to a
	// cluster with auth enabled (auth.go); it keeps its token fresh.
	// Without TLS, New refuses them for an endpoint that is not loopback,
	// unless AllowPlaintextCredentials is set.
	Username string
	Password string
	// AllowPlaintextCredentials lets the client send its password and
	// tokens over plain TCP to endpoints that are not loopback, readable
	// by anyone on the path: only for a network trusted as a whole.
	AllowPlaintextCredentials bool
	// TLS, if set, makes every connection TLS with it: the nodes'
	// certificates verified against its RootCAs (the system's if nil), its
	// Certificates presented to a node that asks for one. Nil: built from
	// CAFile, CertFile and KeyFile (PEM) if any is set, else plain TCP.
	TLS                       *tls.Config
	CAFile, CertFile, KeyFile string
	// NoRequestIDs turns exactly-once writes off (idempotent.go): writes
	// then carry no request ID, and one that ends with an unknown outcome
	// is not retried.
	NoRequestIDs bool
	// IdempotencyWindow is the cluster's --idempotency-window (default
	// kv.DefaultIdempotencyWindow): the client retries a write with its
	// request ID only while the write is younger than it.
	IdempotencyWindow time.Duration
}

// DefaultConfig returns the defaults of every tunable field (Endpoints and
// NoRouting are the caller's). A zero or negative field of a Config given
// to New takes its value from here.
func DefaultConfig() Config {
	return Config{
		DialTimeout:      2 * time.Second,
		RouteRefresh:     10 * time.Second,
		SuspectFor:       5 * time.Second,
		KeepaliveTime:    10 * time.Second,
		KeepaliveTimeout: 5 * time.Second,
	}
}

func (c *Config) validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("caspaxos/client: no endpoints")
	}
	if c.TLS == nil && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "") {
		cfg, err := certs.ClientFiles(c.CAFile, c.CertFile, c.KeyFile)
		if err != nil {
			return err
		}
		c.TLS = cfg
	}
	if c.Username != "" && c.TLS == nil && !c.AllowPlaintextCredentials {
		for _, ep := range c.Endpoints {
			if !certs.Loopback(ep) {
				return fmt.Errorf("caspaxos/client: refusing to send the credentials of user %q over plain TCP to %s: "+
					"use TLS (TLS or CAFile), or set AllowPlaintextCredentials on a trusted network", c.Username, ep)
			}
		}
	}
	def := DefaultConfig()
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.DialTimeout, def.DialTimeout},
		{&c.RouteRefresh, def.RouteRefresh},
		{&c.SuspectFor, def.SuspectFor},
		{&c.KeepaliveTime, def.KeepaliveTime},
		{&c.KeepaliveTimeout, def.KeepaliveTimeout},
		{&c.IdempotencyWindow, kv.DefaultIdempotencyWindow},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	return nil
}

// maxRecvBytes bounds a message from a node (gRPC's default is 4 MiB).
const maxRecvBytes = 256 << 20

// Client is safe for concurrent use.
type Client struct {
	cfg   Config
	conns []*grpc.ClientConn
	muxes []*mux // per endpoint: its Batch stream (batch.go)
	// keepAlives, per endpoint: its lease keep-alive stream (leasestream.go)
	keepAlives []keepAliveMux
	// suspects, per endpoint: until when (Unix ns) it is tried last (suspect.go)
	suspects []atomic.Int64
	routes   atomic.Pointer[routes]
	tokens   *tokens   // nil without Username (auth.go)
	learn    sync.Once // starts learnRoutes on the first write
	ctx      context.Context
	cancel   context.CancelFunc
	mu       sync.Mutex
	next     int // endpoint to try first
}

// New connects lazily to the endpoints.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, suspects: make([]atomic.Int64, len(cfg.Endpoints)), keepAlives: make([]keepAliveMux, len(cfg.Endpoints))}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		// A Batch answer may carry many values; a node bounds each.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes))}
	if cfg.Username != "" {
		c.tokens = &tokens{c: c, password: cfg.Password}
		opts = append(opts, grpc.WithPerRPCCredentials(c.tokens))
	}
	for _, ep := range cfg.Endpoints {
		conn, err := grpc.NewClient(ep, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("caspaxos/client: endpoint %q: %w", ep, err)
		}
		c.conns = append(c.conns, conn)
		c.muxes = append(c.muxes, &mux{conn: conn, ctx: c.ctx})
	}
	return c, nil
}

// Close closes all connections; calls in flight end with an error.
func (c *Client) Close() error {
	c.cancel()
	for _, conn := range c.conns {
		conn.Close()
	}
	return nil
}

// call runs fn on endpoints in turn, starting with the last that worked.
func (c *Client) call(ctx context.Context, idempotent bool, fn func(*grpc.ClientConn) error) error {
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	var last, refused error
	for _, idx := range c.order(start, -1) {
		conn := c.conns[idx]
		if !c.ready(ctx, conn) {
			last = fmt.Errorf("endpoint %s not connected", c.cfg.Endpoints[idx])
			continue
		}
		err := fn(conn)
		if err == nil {
			c.trust(idx)
			c.remember(idx)
			return nil
		}
		typed, answered := fromStatus(err)
		if answered && errors.Is(typed, ErrOverloaded) {
			// Refused, nothing applied: the next endpoint may take it.
			c.suspect(idx)
			refused = typed
			continue
		}
		if answered {
			c.trust(idx)
			c.remember(idx)
			return typed
		}
		if ctx.Err() != nil {
			c.suspect(idx) // no answer in time: a silent node?
		}
		if ctx.Err() != nil && refused != nil {
			return refused
		}
		if ctx.Err() != nil || !idempotent {
			if idempotent {
				return fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		}
		last = err
	}
	if refused != nil {
		return refused
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, last)
}

// ready waits up to DialTimeout for conn to be connected.
func (c *Client) ready(ctx context.Context, conn *grpc.ClientConn) bool {
	if conn.GetState() == connectivity.Ready {
		return true // the common case: no timer, no context
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return true
		}
		if s == connectivity.TransientFailure || s == connectivity.Shutdown || !conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}

func (c *Client) remember(idx int) {
	c.mu.Lock()
	c.next = idx
	c.mu.Unlock()
}
