package clientapi

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/kv"
)

// AdmissionConfig bounds what a node's client services take at once.
type AdmissionConfig struct {
	// MaxInflightRequests bounds the client operations the node runs at
	// once: HTTP requests, unary gRPC calls and the ops of Batch streams
	// together (default 8192). One past it is
	// refused at once with kv.ErrOverloaded (code overloaded; HTTP 429
	// with Retry-After, gRPC ResourceExhausted), having done nothing.
	MaxInflightRequests int
	// MaxConns bounds the client connections open at once, HTTP and gRPC
	// together (default 4096). A connection past it is
	// closed as soon as it is accepted.
	MaxConns int
	// RetryAfter is what a refusal tells the client to wait (HTTP
	// Retry-After, whole seconds; default 1s).
	RetryAfter time.Duration
}

// DefaultAdmissionConfig returns AdmissionConfig's defaults; a zero field
// given to NewAdmission takes its value from here.
func DefaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{MaxInflightRequests: 8192, MaxConns: 4096, RetryAfter: time.Second}
}

// Admission counts the operations and connections of a node's client
// services against AdmissionConfig. One Admission is shared by the HTTP
// and gRPC APIs of a node (a nil *Admission admits everything).
type Admission struct {
	cfg      AdmissionConfig
	inflight atomic.Int64
	conns    atomic.Int64
	// refusedOps and refusedConns count refusals, for metrics.
	refusedOps, refusedConns atomic.Uint64
}

// NewAdmission returns an Admission; zero fields take their defaults.
func NewAdmission(cfg AdmissionConfig) (*Admission, error) {
	if cfg.MaxInflightRequests < 0 || cfg.MaxConns < 0 || cfg.RetryAfter < 0 {
		return nil, errors.New("caspaxos/clientapi: admission bounds must not be negative")
	}
	def := DefaultAdmissionConfig()
	if cfg.MaxInflightRequests == 0 {
		cfg.MaxInflightRequests = def.MaxInflightRequests
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = def.MaxConns
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = def.RetryAfter
	}
	return &Admission{cfg: cfg}, nil
}

// errOverloaded is the refusal of one operation.
func (a *Admission) errOverloaded() error {
	return fmt.Errorf("%w: %d requests in flight, the node's bound (retry after %v)",
		kv.ErrOverloaded, a.cfg.MaxInflightRequests, a.cfg.RetryAfter)
}

// admit takes a slot for one operation, or returns kv.ErrOverloaded; the
// caller calls release once the operation is over (only if admitted).
func (a *Admission) admit() error {
	if a == nil {
		return nil
	}
	if a.inflight.Add(1) > int64(a.cfg.MaxInflightRequests) {
		a.inflight.Add(-1)
		a.refusedOps.Add(1)
		return a.errOverloaded()
	}
	return nil
}

// release frees the slot of an admitted operation.
func (a *Admission) release() {
	if a != nil {
		a.inflight.Add(-1)
	}
}

// Admit takes a slot for one operation of another front end (the etcd
// API shares the node's bound): kv.ErrOverloaded, or nil and the release
// to call once the operation is over. A nil Admission admits everything.
func (a *Admission) Admit() (release func(), err error) {
	if err := a.admit(); err != nil {
		return nil, err
	}
	return a.release, nil
}

// retryAfterSeconds is RetryAfter for the HTTP header (only asked after a
// refusal, so never of a nil Admission): whole seconds, at least 1.
func (a *Admission) retryAfterSeconds() int {
	return max(1, int((a.cfg.RetryAfter+time.Second-1)/time.Second))
}

// Inflight is the number of operations running now.
func (a *Admission) Inflight() int64 { return a.inflight.Load() }

// Conns is the number of client connections open now.
func (a *Admission) Conns() int64 { return a.conns.Load() }

// Refused reports how many operations and connections were refused.
func (a *Admission) Refused() (ops, conns uint64) { return a.refusedOps.Load(), a.refusedConns.Load() }

// Listener wraps l so that at most MaxConns of its connections are open
// at once; one past it is closed as soon as it is accepted.
func (a *Admission) Listener(l net.Listener) net.Listener { return &limitListener{Listener: l, a: a} }

type limitListener struct {
	net.Listener
	a *Admission
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.a.conns.Add(1) > int64(l.a.cfg.MaxConns) {
			l.a.conns.Add(-1)
			l.a.refusedConns.Add(1)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: sync.OnceFunc(func() { l.a.conns.Add(-1) })}, nil
	}
}

type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
