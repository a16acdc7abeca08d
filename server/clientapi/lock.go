package clientapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/lock"
)

// Locks and elections over HTTP (kv/lock.go, server/lock, docs/locks.md):
//
//	POST   /v1/lock/{name}?lease=ID      acquire: {"token":N,...} once held; waits up to
//	                                     &wait=30s (10m at most), then 409 locked;
//	                                     &owner=TAG &lock_delay=15s
//	DELETE /v1/lock/{name}?lease=ID      release (&token=N: only the hold of that token)
//	GET    /v1/lock/{name}               {"name","token","holder","owner",...}
//	POST   /v1/election/{name}?lease=ID  campaign: the body is the proposal; waits as acquire
//	PUT    /v1/election/{name}?lease=ID  proclaim: the body is the new value
//	GET    /v1/election/{name}           the leader; &wait=D&version=N: observe (a long poll)
//	DELETE /v1/election/{name}?lease=ID  resign
//
// Auth: a lock (or election) NAME is guarded as the key NAME: acquire,
// release, campaign, proclaim and resign need the write permission on
// it, reading it the read permission. The lease itself is not checked
// against the caller (any caller who knows a lease's ID may use it, as
// with the lease calls); the lock's reserved register is reached only
// through these calls. An acquire holds no admission slot while it
// waits: a wait is no operation in flight.

// LockAnswer is a lock call's answer. Token is the lock register's
// version: after an acquire, the hold's fencing token. Holder is the
// holding lease's ID (hex; empty: free). Value is an election's value,
// in value_b64 when it is not UTF-8.
type LockAnswer struct {
	Name            string `json:"name"`
	Token           uint64 `json:"token"`
	Holder          string `json:"holder,omitempty"`
	Owner           string `json:"owner,omitempty"`
	Value           string `json:"value,omitempty"`
	ValueBase64     []byte `json:"value_b64,omitempty"`
	NotBeforeMillis int64  `json:"not_before_unix_ms,omitempty"`
}

// lockKind is what a lock call does.
type lockKind uint8

const (
	lockAcquire lockKind = iota + 1
	lockRelease
	lockProclaim
	lockGet
)

// lockCall is one lock call, whichever protocol carried it.
type lockCall struct {
	kind  lockKind
	name  string
	lease uint64
	token uint64 // a release's or proclaim's hold (kv.LockRelease); 0: any
	owner string
	delay time.Duration
	value []byte
	// wait bounds an acquire's wait, or a get's long poll (0: none).
	wait time.Duration
	// version: a long poll answers once the lock's version is above it.
	version uint64
}

// lockCore runs lock calls for both protocols.
type lockCore struct {
	guard   *auth.Guard
	limits  kv.Limits
	b       Backend
	watches Watches
	timeout time.Duration
}

// check refuses a malformed call.
func (c lockCore) check(call lockCall) error {
	if err := kv.CheckLockName(call.name); err != nil {
		return err
	}
	if err := c.limits.CheckKey(kv.LockKey(call.name)); err != nil {
		return err
	}
	if call.kind != lockGet && call.lease == 0 {
		return fmt.Errorf("%w: a lock call needs ?lease=ID (hexadecimal, not 0)", errBadRequest)
	}
	if len(call.owner) > kv.MaxLockOwnerBytes {
		return fmt.Errorf("%w: owner longer than %d bytes", errBadRequest, kv.MaxLockOwnerBytes)
	}
	if err := kv.CheckLockDelay(call.delay); err != nil {
		return err
	}
	return c.limits.CheckValue(call.value)
}

// run checks, authorizes and runs call.
func (c lockCore) run(ctx context.Context, cred auth.Credentials, call lockCall) (protocol.State, error) {
	if err := c.check(call); err != nil {
		return protocol.State{}, err
	}
	if (call.kind == lockAcquire || call.wait > 0) && c.watches == nil {
		return protocol.State{}, errNoWatches
	}
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	p, err := authenticate(actx, c.guard, cred)
	if err == nil {
		perm := auth.PermWrite
		if call.kind == lockGet {
			perm = auth.PermRead
		}
		err = authorize(actx, c.guard, p, auth.Access{Perm: perm, Key: call.name})
	}
	cancel()
	if err != nil {
		return protocol.State{}, err
	}
	// The operations of a waiting call have the request timeout after
	// the wait; the wait itself is bounded apart (lock.Acquire).
	ctx, cancel = context.WithTimeout(ctx, call.wait+c.timeout)
	defer cancel()
	switch call.kind {
	case lockAcquire:
		req := lock.Request{Name: call.name, Lease: call.lease, Owner: call.owner, Delay: call.delay, Value: call.value}
		return lock.Acquire(ctx, lock.Deps{Do: c.b.Do, Wait: c.wait}, req, lock.WaitFor(call.wait))
	case lockRelease:
		return c.b.Do(ctx, kv.LockReleaseOp(call.name, call.lease, call.token))
	case lockProclaim:
		return c.b.Do(ctx, kv.LockProclaimOp(call.name, call.lease, call.token, call.value))
	}
	if call.wait > 0 {
		wctx, wcancel := context.WithTimeout(ctx, call.wait)
		err := c.wait(wctx, map[string]uint64{kv.LockKey(call.name): call.version})
		wcancel()
		if err != nil && wctx.Err() == nil {
			return protocol.State{}, err
		}
	}
	return c.b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LockKey(call.name)})
}

// wait returns once one of from's keys has a state above its version
// there (lock.Deps.Wait), or ctx's error.
func (c lockCore) wait(ctx context.Context, from map[string]uint64) error {
	return WaitChange(ctx, c.watches, from)
}

// lockAnswer reads a lock's state.
func lockAnswer(name string, s protocol.State) (LockAnswer, error) {
	l, err := kv.LockOf(s)
	if err != nil {
		return LockAnswer{}, err
	}
	a := LockAnswer{Name: name, Token: kv.CurrentVersion(s), Owner: l.Owner, NotBeforeMillis: l.NotBeforeMillis}
	if l.Holder != 0 {
		a.Holder = strconv.FormatUint(l.Holder, 16)
	}
	if utf8.Valid(l.Value) {
		a.Value = string(l.Value)
	} else {
		a.ValueBase64 = l.Value
	}
	return a, nil
}

func (h *httpAPI) locks() lockCore {
	return lockCore{guard: h.cfg.Guard, limits: h.cfg.Limits, b: h.b, watches: h.cfg.Watches, timeout: h.cfg.RequestTimeout}
}

// lockRoutes adds the lock and election routes to mux.
func (h *httpAPI) lockRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/lock/{name...}", h.lockHandler(lockAcquire, false))
	mux.HandleFunc("DELETE /v1/lock/{name...}", h.lockHandler(lockRelease, false))
	mux.HandleFunc("GET /v1/lock/{name...}", h.lockHandler(lockGet, false))
	mux.HandleFunc("POST /v1/election/{name...}", h.lockHandler(lockAcquire, true))
	mux.HandleFunc("PUT /v1/election/{name...}", h.lockHandler(lockProclaim, true))
	mux.HandleFunc("GET /v1/election/{name...}", h.lockHandler(lockGet, true))
	mux.HandleFunc("DELETE /v1/election/{name...}", h.lockHandler(lockRelease, true))
}

// lockHandler serves one lock route. Calls that wait (an acquire, a
// long poll) hold no admission slot; the others are admitted.
func (h *httpAPI) lockHandler(kind lockKind, election bool) http.HandlerFunc {
	serve := func(w http.ResponseWriter, r *http.Request) {
		call, err := h.lockCall(w, r, kind, election)
		if err == nil && call.wait > 0 {
			// A wait may outlast the server's WriteTimeout (as a long poll).
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(call.wait + h.cfg.RequestTimeout))
		}
		var s protocol.State
		if err == nil {
			s, err = h.locks().run(r.Context(), HTTPCredentials(r), call)
		}
		var a LockAnswer
		if err == nil {
			a, err = lockAnswer(call.name, s)
		}
		if err != nil {
			writeError(w, err, 0)
			return
		}
		w.Header().Set("ETag", etag(a.Token))
		writeJSON(w, http.StatusOK, a)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if kind == lockAcquire || r.URL.Query().Has("wait") {
			if err := checkOrigin(r, false); err != nil {
				writeError(w, err, 0)
				return
			}
			serve(w, r)
			return
		}
		h.admit(serve)(w, r)
	}
}

// lockCall reads a lock route's request.
func (h *httpAPI) lockCall(w http.ResponseWriter, r *http.Request, kind lockKind, election bool) (lockCall, error) {
	call := lockCall{kind: kind, name: r.PathValue("name"), delay: kv.DefaultLockDelay}
	allowed := map[lockKind][]string{
		lockAcquire:  {"lease", "wait", "owner", "lock_delay"},
		lockRelease:  {"lease", "token"},
		lockProclaim: {"lease", "token"},
		lockGet:      {"wait", "version"},
	}[kind]
	if err := onlyQuery(r, allowed...); err != nil {
		return call, err
	}
	q := r.URL.Query()
	var err error
	if q.Has("lease") {
		if call.lease, err = leaseID(q.Get("lease")); err != nil {
			return call, err
		}
	}
	call.owner = q.Get("owner")
	if q.Has("lock_delay") {
		if call.delay, err = time.ParseDuration(q.Get("lock_delay")); err != nil {
			return call, fmt.Errorf("%w: lock_delay=%q is not a duration like 15s", errBadRequest, q.Get("lock_delay"))
		}
	}
	if s := q.Get("wait"); s != "" {
		if call.wait, err = time.ParseDuration(s); err != nil || call.wait < 0 {
			return call, fmt.Errorf("%w: wait=%q is not a duration like 30s", errBadRequest, s)
		}
	}
	if s := q.Get("version"); s != "" {
		if call.version, err = strconv.ParseUint(s, 10, 64); err != nil {
			return call, fmt.Errorf("%w: version=%q is not a version", errBadRequest, s)
		}
	}
	if s := q.Get("token"); s != "" {
		if call.token, err = strconv.ParseUint(s, 10, 64); err != nil {
			return call, fmt.Errorf("%w: token=%q is not a fencing token", errBadRequest, s)
		}
	}
	switch {
	case kind == lockAcquire:
		call.wait = lock.WaitFor(call.wait)
	case q.Has("wait") || q.Has("version"):
		call.wait = kv.WatchWait(call.wait)
	}
	if election && (kind == lockAcquire || kind == lockProclaim) {
		if call.value, err = readLockValue(w, r, h.cfg.Limits); err != nil {
			return call, err
		}
	}
	return call, nil
}

func readLockValue(w http.ResponseWriter, r *http.Request, l kv.Limits) ([]byte, error) {
	body, err := readBody(w, r, l.MaxValueBytes)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%w: more than %d bytes", kv.ErrValueTooLarge, l.MaxValueBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	return body, nil
}

// grpcLock is the gRPC Lock service.
type grpcLock struct {
	caspaxospb.UnimplementedLockServer
	g *grpcAPI
}

func (l *grpcLock) run(ctx context.Context, call lockCall) (*caspaxospb.LockResponse, error) {
	c := lockCore{guard: l.g.cfg.Guard, limits: l.g.cfg.Limits, b: l.g.b, watches: l.g.cfg.Watches, timeout: l.g.cfg.RequestTimeout}
	s, err := c.run(ctx, GRPCCredentials(ctx), call)
	if err != nil {
		return nil, statusOf(err)
	}
	lk, err := kv.LockOf(s)
	if err != nil {
		return nil, statusOf(err)
	}
	return &caspaxospb.LockResponse{Name: call.name, Token: kv.CurrentVersion(s), Holder: lk.Holder, Owner: lk.Owner, Value: lk.Value, NotBeforeUnixMs: lk.NotBeforeMillis}, nil
}

func (l *grpcLock) Acquire(ctx context.Context, r *caspaxospb.LockAcquireRequest) (*caspaxospb.LockResponse, error) {
	delay := kv.DefaultLockDelay
	if r.LockDelayMs != nil {
		delay = time.Duration(r.GetLockDelayMs()) * time.Millisecond
	}
	return l.run(ctx, lockCall{kind: lockAcquire, name: r.GetName(), lease: r.GetLease(), owner: r.GetOwner(), delay: delay,
		value: r.GetValue(), wait: lock.WaitFor(time.Duration(r.GetWaitMs()) * time.Millisecond)})
}

func (l *grpcLock) Release(ctx context.Context, r *caspaxospb.LockLeaseRequest) (*caspaxospb.LockResponse, error) {
	return l.run(ctx, lockCall{kind: lockRelease, name: r.GetName(), lease: r.GetLease(), token: r.GetToken()})
}

func (l *grpcLock) Proclaim(ctx context.Context, r *caspaxospb.LockProclaimRequest) (*caspaxospb.LockResponse, error) {
	return l.run(ctx, lockCall{kind: lockProclaim, name: r.GetName(), lease: r.GetLease(), token: r.GetToken(), value: r.GetValue()})
}

func (l *grpcLock) Get(ctx context.Context, r *caspaxospb.LockGetRequest) (*caspaxospb.LockResponse, error) {
	call := lockCall{kind: lockGet, name: r.GetName(), version: r.GetVersion()}
	if r.GetWaitMs() > 0 {
		call.wait = kv.WatchWait(time.Duration(r.GetWaitMs()) * time.Millisecond)
	}
	return l.run(ctx, call)
}
