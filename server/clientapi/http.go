package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// HTTPConfig configures the HTTP/JSON API.
type HTTPConfig struct {
	Limits kv.Limits
	// RequestTimeout bounds each operation (default kv.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Metrics, if set, serves GET /metrics.
	Metrics http.Handler
	Logger  *slog.Logger
	// Admission, if set, bounds the key operations in flight (shared with
	// the gRPC API): one past its bound is answered 429 overloaded, with
	// Retry-After, before its body is read.
	Admission *Admission
	// Guard, if set, authenticates and authorizes requests (auth.go); nil:
	// every request is open.
	Guard *auth.Guard
	// Warnings, if set, says what is wrong with the node without making
	// it unhealthy (peers unauthenticated): /v1/health answers 200 with
	// them under "warnings".
	Warnings func() []string
	// Status, if set, serves GET /v1/status (status.go): what it returns,
	// as JSON.
	Status func(ctx context.Context) any
	// UI, if set, is served under /ui/ (the status page).
	UI http.Handler
	// Watches, if set, serves the long poll (?wait) and /v1/watch
	// (watch_http.go); nil: they answer bad request.
	Watches Watches
	// AllowedHosts are the host names, besides IP addresses, localhost
	// and names under .localhost, that a browser's request over plain
	// HTTP may name in its Host header (the DNS rebinding guard,
	// hostguard.go); AllowAnyHost ("*") among them turns the guard off.
	AllowedHosts []string
}

// NewHTTP returns the HTTP/JSON API of a node:
//
//	GET    /v1/kv/{key}            the value; ETag: "<version>"; X-Caspaxos-Lease: its lease's ID, if attached
//	GET    /v1/kv/{prefix}?list    a page of the live keys of prefix: &limit=N &after=KEY &keys (list.go)
//	GET    /v1/kv/{key}?wait=D     long poll: &version=N; answers once the version is above N (watch_http.go)
//	GET    /v1/watch/{prefix}      text/event-stream of the prefix's keys, then their changes (watch_http.go)
//	PUT    /v1/kv/{key}            store the body; If-Match: "<v>" = compare-and-swap, If-None-Match: * = create;
//	                               ?lease=ID attaches the key to a live lease (deleted when it ends; none: detached)
//	DELETE /v1/kv/{key}            delete; If-Match honoured
//	POST   /v1/kv/{key}?incr=N     add N to a decimal integer
//	GET    /v1/kv/{key}?request_id=ID  was the write of ID applied? (outcome.go)
//	POST   /v1/lease?ttl=10s, PUT /v1/lease/{id}/keepalive, DELETE and GET /v1/lease/{id} (lease.go)
//	POST   /v1/lock/{name}?lease=ID, DELETE and GET /v1/lock/{name}; /v1/election/{name} (lock.go)
//	GET    /v1/health              200 when a quorum of acceptors is reachable, else 503
//	GET    /v1/members             the members, and a membership change in progress
//	POST   /v1/members             add a member: body NAME=PEER_ADDR; answers once done
//	DELETE /v1/members/{name}      remove a member; answers once done
//	POST   /v1/members/release     free nodes of a change whose controller is gone: body NAME or empty (every member); ?force=true
//	POST   /v1/auth/login          {"user","password"}: a token (auth.go lists the other /v1/auth routes)
//	POST   /v1/restore             admin: write keys at a version floor (restore.go)
//	GET    /v1/status              this node's status (if configured; status.go)
//	GET    /ui/                    the status page (if configured)
//	GET    /metrics                Prometheus metrics (if configured)
//
// PUT, DELETE and POST take an Idempotency-Key header: a write's request
// ID, which makes it exactly-once (outcome.go).
//
// Every request a browser sends over plain HTTP, on every route, must pass
// the DNS rebinding guard (checkHost); every request that is not GET or
// HEAD the CSRF rule (checkOrigin); and with a Guard every request its
// checks (auth.go).
func NewHTTP(cfg HTTPConfig, b Backend) http.Handler {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = kv.DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &httpAPI{cfg: cfg, b: b}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/kv/{key...}", h.getRoute)
	mux.HandleFunc("GET /v1/watch/{prefix...}", h.watchStream)
	mux.HandleFunc("PUT /v1/kv/{key...}", h.admit(h.put))
	mux.HandleFunc("DELETE /v1/kv/{key...}", h.admit(h.delete))
	mux.HandleFunc("POST /v1/kv/{key...}", h.admit(h.incr))
	mux.HandleFunc("GET /v1/health", h.health)
	mux.HandleFunc("GET /v1/members", h.members)
	mux.HandleFunc("POST /v1/members", h.adminOnly(h.addMember))
	mux.HandleFunc("DELETE /v1/members/{name}", h.adminOnly(h.removeMember))
	mux.HandleFunc("POST /v1/members/release", h.adminOnly(h.releaseMembers))
	mux.HandleFunc("POST /v1/restore", h.admit(h.adminOnly(h.restore)))
	h.authRoutes(mux)
	h.statusRoutes(mux)
	h.leaseRoutes(mux) // lease.go
	h.lockRoutes(mux)  // lock.go
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s %s", errBadRequest, r.Method, r.URL.Path), http.StatusNotFound)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			// ServeMux answers "GET * HTTP/1.1" with a bare 400; ours has
			// the error shape.
			writeError(w, fmt.Errorf("%w: the request target * names no resource", errBadRequest), 0)
			return
		}
		if err := checkHost(r, cfg.AllowedHosts); err != nil {
			writeError(w, err, 0)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type httpAPI struct {
	cfg HTTPConfig
	b   Backend
}

// admit runs next within the admission bound, or refuses the request
// (overloaded) without reading it.
func (h *httpAPI) admit(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := checkOrigin(r, false); err != nil {
			writeError(w, err, 0)
			return
		}
		if err := h.cfg.Admission.admit(); err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(h.cfg.Admission.retryAfterSeconds()))
			writeError(w, err, 0)
			return
		}
		defer h.cfg.Admission.release()
		next(w, r)
	}
}

// run checks and runs one operation with the request's deadline.
func (h *httpAPI) run(r *http.Request, op kv.Op) (protocol.State, error) {
	if op.Kind != kv.OpGet && op.Kind != kv.OpOutcome {
		op.RequestID = r.Header.Get(IdempotencyKeyHeader) // exactly-once (outcome.go)
	}
	if err := checkClientOp(op, h.cfg.Limits); err != nil {
		return protocol.State{}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	p, err := authenticate(ctx, h.cfg.Guard, HTTPCredentials(r))
	if err == nil {
		err = authorize(ctx, h.cfg.Guard, p, access(op))
	}
	if err != nil {
		return protocol.State{}, err
	}
	return h.b.Do(ctx, op)
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" && r.URL.Query().Has("list") {
		h.list(w, r)
		return
	}
	if r.URL.Query().Has("request_id") {
		h.outcome(w, r)
		return
	}
	if err := onlyQuery(r); err != nil {
		writeError(w, err, 0)
		return
	}
	s, err := h.run(r, kv.Op{Kind: kv.OpGet, Key: r.PathValue("key")})
	if err == nil && !s.Exists() {
		err = kv.ErrNotFound
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if s.Lease != 0 {
		w.Header()[LeaseHeader] = []string{strconv.FormatUint(s.Lease, 16)}
	}
	writeValue(w, s.Value, s.Version)
}

// LeaseHeader answers a read of a key attached to a lease: the lease's ID
// in hexadecimal, as the lease routes name it.
const LeaseHeader = "X-Caspaxos-Lease"

func (h *httpAPI) put(w http.ResponseWriter, r *http.Request) {
	op, err := h.putOp(w, r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	s, err := h.run(r, op)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeVersion(w, s.Version, true)
}

func (h *httpAPI) putOp(w http.ResponseWriter, r *http.Request) (kv.Op, error) {
	op := kv.Op{Kind: kv.OpPut, Key: r.PathValue("key")}
	if err := onlyQuery(r, "lease"); err != nil {
		return op, err
	}
	if q := r.URL.Query(); q.Has("lease") {
		id, err := leaseID(q.Get("lease"))
		if err != nil {
			return op, err
		}
		op.Lease = id
	}
	match, hasMatch, err := ifMatch(r)
	if err != nil {
		return op, err
	}
	noneMatch := r.Header.Get("If-None-Match")
	switch {
	case hasMatch && noneMatch != "":
		return op, fmt.Errorf("%w: If-Match and If-None-Match together", errBadRequest)
	case noneMatch == "*":
		op.Kind = kv.OpCreate
	case noneMatch != "":
		return op, fmt.Errorf("%w: If-None-Match supports only *", errBadRequest)
	case hasMatch:
		op.Kind, op.Version = kv.OpCompareAndSwap, match
	}
	body, err := readBody(w, r, h.cfg.Limits.MaxValueBytes)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return op, fmt.Errorf("%w: more than %d bytes", kv.ErrValueTooLarge, h.cfg.Limits.MaxValueBytes)
	}
	if err != nil {
		return op, fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	op.Value = body
	return op, nil
}

func (h *httpAPI) delete(w http.ResponseWriter, r *http.Request) {
	op := kv.Op{Kind: kv.OpDelete, Key: r.PathValue("key")}
	err := onlyQuery(r)
	if err == nil {
		op.Version, _, err = ifMatch(r)
	}
	var s protocol.State
	if err == nil {
		s, err = h.run(r, op)
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeVersion(w, s.Version, false)
}

func (h *httpAPI) incr(w http.ResponseWriter, r *http.Request) {
	op := kv.Op{Kind: kv.OpIncrement, Key: r.PathValue("key")}
	delta, err := incrQuery(r)
	var s protocol.State
	if err == nil {
		op.Delta = delta
		s, err = h.run(r, op)
	}
	var n int64
	if err == nil {
		n, err = kv.Integer(s)
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeIncrement(w, n, s.Version)
}

func (h *httpAPI) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if err := h.b.Health(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"healthy": false, "message": err.Error()})
		return
	}
	answer := map[string]any{"healthy": true}
	if h.cfg.Warnings != nil {
		if ws := h.cfg.Warnings(); len(ws) > 0 {
			answer["warnings"] = ws
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

func (h *httpAPI) members(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.Members(r.Context())
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// onlyQuery refuses query parameters on routes that take none.
func onlyQuery(r *http.Request, allowed ...string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	for name := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			ok = ok || name == a
		}
		if !ok {
			return fmt.Errorf("%w: unknown query parameter %q", errBadRequest, name)
		}
	}
	return nil
}

func incrQuery(r *http.Request) (int64, error) {
	q := r.URL.Query()
	for name := range q {
		if name != "incr" {
			return 0, fmt.Errorf("%w: unknown query parameter %q", errBadRequest, name)
		}
	}
	if len(q["incr"]) != 1 {
		return 0, fmt.Errorf("%w: POST needs exactly one ?incr=N", errBadRequest)
	}
	n, err := strconv.ParseInt(q.Get("incr"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: incr=%q is not an int64", errBadRequest, q.Get("incr"))
	}
	return n, nil
}

// ifMatch parses If-Match: "<version>" (one strong ETag; weak or lists are refused).
func ifMatch(r *http.Request) (uint64, bool, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return 0, false, nil
	}
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, false, fmt.Errorf("%w: If-Match must be one quoted version, like \"7\"", errBadRequest)
	}
	n, err := strconv.ParseUint(v[1:len(v)-1], 10, 64)
	if err != nil || n == 0 {
		return 0, false, fmt.Errorf("%w: If-Match %s is not a version", errBadRequest, v)
	}
	return n, true, nil
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes {"error":{"code","message",...}}; status 0 takes the table's.
func writeError(w http.ResponseWriter, err error, status int) {
	c, current := classify(err)
	if status == 0 {
		status = c.http
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="caspaxos"`)
	}
	body := map[string]any{"code": c.code, "message": err.Error()}
	if c.code == CodeVersionMismatch {
		body["current_version"] = current
	}
	writeJSON(w, status, map[string]any{"error": body})
}

// HTTPTimeouts bound how long a client may hold a connection without
// finishing what it owes (see net/http.Server); zero takes the default.
type HTTPTimeouts struct {
	// ReadHeaderTimeout bounds reading a request's headers (default 5s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (default
	// 30s: a value at the 16 MiB limit at 4 Mbit/s).
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer (default 60s; well past the request timeout).
	WriteTimeout time.Duration
	// IdleTimeout bounds a kept-alive connection's wait for its next
	// request (default 120s).
	IdleTimeout time.Duration
}

// DefaultHTTPTimeouts returns HTTPTimeouts's defaults; a zero or negative
// field given to NewHTTPServer takes its value from here.
func DefaultHTTPTimeouts() HTTPTimeouts {
	return HTTPTimeouts{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
}

// maxHTTPHeaderBytes bounds a request's line and headers (net/http's
// default is 1 MiB): the key, which travels in the path, and the few
// headers the API reads fit well within it.
const maxHTTPHeaderBytes = 64 << 10

// NewHTTPServer returns an http.Server for h whose timeouts cut off slow
// clients (slowloris: headers or a body sent a byte at a time, a
// connection kept open idle) so that they hold no connection for long.
func NewHTTPServer(h http.Handler, t HTTPTimeouts, log *slog.Logger) *http.Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defaults := DefaultHTTPTimeouts()
	def(&t.ReadHeaderTimeout, defaults.ReadHeaderTimeout)
	def(&t.ReadTimeout, defaults.ReadTimeout)
	def(&t.WriteTimeout, defaults.WriteTimeout)
	def(&t.IdleTimeout, defaults.IdleTimeout)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeaderTimeout,
		ReadTimeout:       t.ReadTimeout,
		WriteTimeout:      t.WriteTimeout,
		IdleTimeout:       t.IdleTimeout,
		MaxHeaderBytes:    maxHTTPHeaderBytes,
		Protocols:         httpProtocols(),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
