package consulapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
)

// APIVersion is the Consul version /v1/agent/self reports: the Consul API
// whose KV subset is served (docs/consul.md), marked as caspaxos's.
const APIVersion = "1.20.0-caspaxos"

// Consul's bounds on blocking queries (its documented defaults).
const (
	// DefaultBlockingWait is a blocking query's wait when it names none.
	DefaultBlockingWait = 5 * time.Minute
)

// Config configures the Consul front end.
type Config struct {
	Limits kv.Limits
	// RequestTimeout bounds each operation of a request (a blocking
	// query's wait comes on top; default kv.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Admission, if set, is the node's bound on operations in flight,
	// shared with the client port. A blocking query holds no slot while
	// it waits.
	Admission *clientapi.Admission
	// Guard, if set, authenticates and authorizes requests as on the
	// client port; nil: every request is open.
	Guard *auth.Guard
	// Watches serves blocking queries; nil: a blocking query answers at
	// once, as if its wait had ended.
	Watches clientapi.Watches
	// Addr is this node's Consul address, which /v1/status/leader names
	// (any node serves any key: each answers with itself).
	Addr string
	// NodeName is the node's name (/v1/agent/self, sessions' Node).
	NodeName string
	// Version is the version /v1/agent/self reports (APIVersion).
	Version string
	// MaxTxnAttempts bounds the read-and-compare-and-swap rounds of one
	// /v1/txn that keeps losing to concurrent changes of its key (default
	// 16); past it the transaction fails, nothing applied.
	MaxTxnAttempts int
	// MaxSessions bounds the sessions the cluster keeps (session.go;
	// default 1024): the ended ones are dropped when the table fills, and
	// a create past it is refused.
	MaxSessions int
	// Now is the clock of lock delays (time.Now).
	Now func() time.Time
	// AllowedHosts are the host names, besides IP addresses and localhost,
	// a browser may name this port by (clientapi.CheckBrowser: the DNS
	// rebinding guard); "*": any.
	AllowedHosts []string
}

// DefaultConfig returns Config's defaults; New fills zero fields from it.
func DefaultConfig() Config {
	return Config{Limits: kv.DefaultLimits, RequestTimeout: kv.DefaultRequestTimeout, MaxTxnAttempts: 16,
		MaxSessions: 1024, Now: time.Now}
}

// Server is the Consul front end over one node: an http.Handler.
type Server struct {
	cfg Config
	b   clientapi.Backend
}

// New returns the front end of cfg (zero fields from DefaultConfig) over b.
func New(cfg Config, b clientapi.Backend) *Server {
	def := DefaultConfig()
	if cfg.Limits == (kv.Limits{}) {
		cfg.Limits = def.Limits
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = def.RequestTimeout
	}
	if cfg.MaxTxnAttempts <= 0 {
		cfg.MaxTxnAttempts = def.MaxTxnAttempts
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = def.MaxSessions
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	return &Server{cfg: cfg, b: b}
}

// route is one path of the API: its handler per method.
type route map[string]http.HandlerFunc

// ServeHTTP serves Consul's HTTP API. It routes by hand, not with
// http.ServeMux, which would redirect a key holding "//" or ".." to its
// cleaned path: a Consul key is any string.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A web page must not reach the store through this port on localhost
	// either: the client port's rules for what a browser sends.
	if err := clientapi.CheckBrowser(r, s.cfg.AllowedHosts); err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprint(w, err.Error())
		return
	}
	var rt route
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, kvPath):
		rt = route{http.MethodGet: s.getKV, http.MethodPut: s.putKV, http.MethodPost: s.putKV, http.MethodDelete: s.deleteKV}
	case p == "/v1/txn":
		rt = route{http.MethodPut: s.txn, http.MethodPost: s.txn}
	case p == "/v1/status/leader":
		rt = route{http.MethodGet: s.statusLeader}
	case p == "/v1/status/peers":
		rt = route{http.MethodGet: s.statusPeers}
	case strings.HasPrefix(p, "/v1/session/"):
		rt = route{http.MethodGet: s.sessions, http.MethodPut: s.sessions, http.MethodPost: s.sessions}
	case p == "/v1/agent/self":
		rt = route{http.MethodGet: s.agentSelf}
	default:
		s.notServed(w, r)
		return
	}
	h, ok := rt[r.Method]
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = fmt.Fprintf(w, "method %s not allowed on %s", r.Method, r.URL.Path)
		return
	}
	h(w, r)
}

// kvPath begins every KV path; the key is the rest.
const kvPath = "/v1/kv/"

// Errors of the front end's own checks.
var (
	errBadRequest  = errors.New("caspaxos: bad request")
	errUnsupported = errors.New("caspaxos: not supported by caspaxos's Consul API")
	errContended   = errors.New("caspaxos: contended")
)

// notServed answers every path no handler takes.
func (s *Server) notServed(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("%w: %s %s (docs/consul.md lists what is served: /v1/kv, /v1/txn, /v1/session, /v1/status, /v1/agent/self)", errUnsupported, r.Method, r.URL.Path))
}

// statusOf maps err to an HTTP status and a body: for auth, the words
// Consul itself answers ("Permission denied", "ACL not found"), which
// Consul's tools match on; otherwise caspaxos's message.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, errUnsupported):
		return http.StatusNotImplemented, err.Error()
	case errors.Is(err, errContended):
		return http.StatusConflict, err.Error()
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, err.Error()
	}
	switch code, _ := kv.Code(err); code {
	case kv.CodeKeyTooLarge, kv.CodeValueTooLarge:
		return http.StatusRequestEntityTooLarge, err.Error()
	case kv.CodeBadRequest:
		return http.StatusBadRequest, err.Error()
	case kv.CodeNoQuorum:
		return http.StatusServiceUnavailable, err.Error()
	case kv.CodeUnknownOutcome:
		return http.StatusGatewayTimeout, err.Error()
	case kv.CodeOverloaded:
		return http.StatusTooManyRequests, "rate limit exceeded: " + err.Error()
	case kv.CodeNoSpace:
		return http.StatusInsufficientStorage, err.Error()
	case kv.CodeUnauthenticated:
		return http.StatusForbidden, "ACL not found: " + err.Error()
	case kv.CodePermissionDenied:
		return http.StatusForbidden, "Permission denied: " + err.Error()
	case kv.CodeNotFound:
		return http.StatusNotFound, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

// writeError answers err as Consul does: a status and a plain-text body.
func writeError(w http.ResponseWriter, err error) {
	code, msg := statusOf(err)
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// writeJSON answers v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// setIndex sets the headers of a query's answer: its index (at least 1,
// as Consul's: a blocking query at index 0 must not return at once for
// ever) and the leader headers, which are always "known" and "just now":
// there is no leader, and every answer is a linearizable read.
func setIndex(w http.ResponseWriter, index uint64) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(1, index), 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
}

// credentials reads a request's credentials: Consul's X-Consul-Token
// header, ?token=, or a bearer Authorization header (a caspaxos token
// each: docs/security.md), and the verified client certificates' common
// names.
func credentials(r *http.Request) auth.Credentials {
	c := clientapi.HTTPCredentials(r)
	if v := r.URL.Query().Get("token"); v != "" {
		c.Token = v
	}
	if v := r.Header.Get("X-Consul-Token"); v != "" {
		c.Token = v
	}
	return c
}

// call is one authenticated request: its principal and context.
type call struct {
	ctx context.Context
	p   auth.Principal
	s   *Server
}

// begin authenticates a request.
func (s *Server) begin(r *http.Request) (*call, error) {
	p := auth.Principal{Open: true}
	if s.cfg.Guard != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		var err error
		if p, err = s.cfg.Guard.Authenticate(ctx, credentials(r)); err != nil {
			return nil, err
		}
	}
	return &call{ctx: r.Context(), p: p, s: s}, nil
}

// allowed checks that the caller may do a.
func (c *call) allowed(a auth.Access) error {
	if c.s.cfg.Guard == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	return c.s.cfg.Guard.Authorize(ctx, c.p, a)
}

// readable says whether the caller may read key (a listing's filter).
func (c *call) readable(key string) (bool, error) {
	err := c.allowed(auth.Access{Perm: auth.PermRead, Key: key})
	if errors.Is(err, kv.ErrPermissionDenied) {
		return false, nil
	}
	return err == nil, err
}

// admitted runs fn with an admission slot and the request timeout.
func (c *call) admitted(fn func(ctx context.Context) error) error {
	release, err := c.s.cfg.Admission.Admit()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	return fn(ctx)
}

// do checks op's key, value and permission and runs it, admitted.
func (c *call) do(op kv.Op) (protocol.State, error) {
	if err := op.Validate(c.s.cfg.Limits); err != nil {
		return protocol.State{}, err
	}
	if err := kv.CheckClientKey(op.Key); err != nil {
		return protocol.State{}, err
	}
	perm := auth.PermWrite
	if op.Kind == kv.OpGet {
		perm = auth.PermRead
	}
	if err := c.allowed(auth.Access{Perm: perm, Key: op.Key}); err != nil {
		return protocol.State{}, err
	}
	var st protocol.State
	err := c.admitted(func(ctx context.Context) error {
		var err error
		st, err = c.s.b.Do(ctx, op)
		return err
	})
	return st, err
}
