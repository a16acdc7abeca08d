package clientapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Leases over HTTP (kv/lease.go, docs/leases.md):
//
//	POST   /v1/lease?ttl=10s         grant: {"id":"<hex>","ttl_ms":N}; &id=<hex> names it
//	PUT    /v1/lease/{id}/keepalive  renew: {"id","ttl_ms"}; lease_not_found once expired
//	DELETE /v1/lease/{id}            revoke
//	GET    /v1/lease/{id}            {"id","ttl_ms","state","renewed_unix_ms"}
//
// A lease is a register in the cluster's reserved key space: with auth on,
// a call needs the write permission on the lease's key (root has it).
// Whether a lease is expired is the committed state of its register, never
// a clock read at the answering node.

// LeaseAnswer is a lease call's answer.
type LeaseAnswer struct {
	ID            string `json:"id"`
	TTLMillis     int64  `json:"ttl_ms"`
	State         string `json:"state,omitempty"`
	RenewedMillis int64  `json:"renewed_unix_ms,omitempty"`
}

// grpcLease is the gRPC Lease service.
type grpcLease struct {
	caspaxospb.UnimplementedLeaseServer
	g *grpcAPI
}

// run checks and runs a lease operation as runLease does.
func (l *grpcLease) run(ctx context.Context, op kv.Op, perm auth.Perm) (*caspaxospb.LeaseResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, l.g.timeout(0))
	defer cancel()
	p, err := authenticate(ctx, l.g.cfg.Guard, GRPCCredentials(ctx))
	if err != nil {
		return nil, statusOf(err)
	}
	r, err := l.exec(ctx, p, op, perm)
	if err != nil {
		return nil, statusOf(err)
	}
	return r, nil
}

// exec checks a lease operation, and that p may run it (perm on the
// lease's key), runs it, and answers the lease after it. A read of a
// lease that is not live fails with kv.ErrLeaseNotFound.
func (l *grpcLease) exec(ctx context.Context, p auth.Principal, op kv.Op, perm auth.Perm) (*caspaxospb.LeaseResponse, error) {
	id, _ := strconv.ParseUint(strings.TrimPrefix(op.Key, kv.LeasePrefix), 16, 64)
	if id == 0 {
		return nil, fmt.Errorf("%w: lease ID 0", errBadRequest)
	}
	if op.Kind != kv.OpGet {
		if err := op.Validate(l.g.cfg.Limits); err != nil {
			return nil, err
		}
	}
	if err := authorize(ctx, l.g.cfg.Guard, p, auth.Access{Perm: perm, Key: op.Key}); err != nil {
		return nil, err
	}
	s, err := l.g.b.Do(ctx, op)
	if err != nil {
		return nil, err
	}
	a, err := leaseAnswer(id, s)
	if err != nil {
		return nil, err
	}
	if op.Kind == kv.OpGet && a.State != kv.LeaseLive.String() {
		return nil, kv.ErrLeaseNotFound
	}
	return &caspaxospb.LeaseResponse{Id: id, TtlMs: a.TTLMillis, State: a.State, RenewedUnixMs: a.RenewedMillis}, nil
}

func (l *grpcLease) LeaseGrant(ctx context.Context, r *caspaxospb.LeaseGrantRequest) (*caspaxospb.LeaseResponse, error) {
	id := r.GetId()
	if id == 0 {
		var err error
		if id, err = kv.NewLeaseID(); err != nil {
			return nil, statusOf(err)
		}
	}
	return l.run(ctx, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: r.GetTtlMs()}, auth.PermWrite)
}

func (l *grpcLease) LeaseKeepAlive(ctx context.Context, r *caspaxospb.LeaseIDRequest) (*caspaxospb.LeaseResponse, error) {
	return l.run(ctx, kv.Op{Kind: kv.OpLeaseKeepAlive, Key: kv.LeaseKey(r.GetId())}, auth.PermWrite)
}

func (l *grpcLease) LeaseRevoke(ctx context.Context, r *caspaxospb.LeaseIDRequest) (*caspaxospb.LeaseResponse, error) {
	return l.run(ctx, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(r.GetId())}, auth.PermWrite)
}

func (l *grpcLease) LeaseTimeToLive(ctx context.Context, r *caspaxospb.LeaseIDRequest) (*caspaxospb.LeaseResponse, error) {
	return l.run(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(r.GetId())}, auth.PermRead)
}

// leaseRoutes adds the lease routes to mux.
func (h *httpAPI) leaseRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/lease", h.admit(h.leaseGrant))
	mux.HandleFunc("PUT /v1/lease/{id}/keepalive", h.admit(h.leaseKeepAlive))
	mux.HandleFunc("DELETE /v1/lease/{id}", h.admit(h.leaseRevoke))
	mux.HandleFunc("GET /v1/lease/{id}", h.admit(h.leaseGet))
}

// runLease checks and runs a lease operation (its key is reserved, which
// the KV routes refuse).
func (h *httpAPI) runLease(r *http.Request, op kv.Op, perm auth.Perm) (protocol.State, error) {
	if op.Kind != kv.OpGet {
		if err := op.Validate(h.cfg.Limits); err != nil {
			return protocol.State{}, err
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	p, err := authenticate(ctx, h.cfg.Guard, HTTPCredentials(r))
	if err == nil {
		err = authorize(ctx, h.cfg.Guard, p, auth.Access{Perm: perm, Key: op.Key})
	}
	if err != nil {
		return protocol.State{}, err
	}
	return h.b.Do(ctx, op)
}

func leaseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: lease ID %.40q is not a non-zero hexadecimal number", errBadRequest, s)
	}
	return id, nil
}

func (h *httpAPI) leaseGrant(w http.ResponseWriter, r *http.Request) {
	ans, err := h.grant(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (h *httpAPI) grant(r *http.Request) (LeaseAnswer, error) {
	if err := onlyQuery(r, "ttl", "id"); err != nil {
		return LeaseAnswer{}, err
	}
	q := r.URL.Query()
	ttl, err := time.ParseDuration(q.Get("ttl"))
	if err != nil {
		return LeaseAnswer{}, fmt.Errorf("%w: ttl=%q is not a duration like 10s", errBadRequest, q.Get("ttl"))
	}
	if err := kv.CheckLeaseTTL(ttl); err != nil {
		return LeaseAnswer{}, err
	}
	var id uint64
	if q.Has("id") {
		if id, err = leaseID(q.Get("id")); err != nil {
			return LeaseAnswer{}, err
		}
	} else if id, err = kv.NewLeaseID(); err != nil {
		return LeaseAnswer{}, err
	}
	s, err := h.runLease(r, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: ttl.Milliseconds()}, auth.PermWrite)
	if err != nil {
		return LeaseAnswer{}, err
	}
	return leaseAnswer(id, s)
}

func (h *httpAPI) leaseKeepAlive(w http.ResponseWriter, r *http.Request) {
	h.leaseOp(w, r, kv.OpLeaseKeepAlive, auth.PermWrite)
}

func (h *httpAPI) leaseRevoke(w http.ResponseWriter, r *http.Request) {
	h.leaseOp(w, r, kv.OpLeaseRevoke, auth.PermWrite)
}

func (h *httpAPI) leaseGet(w http.ResponseWriter, r *http.Request) {
	h.leaseOp(w, r, kv.OpGet, auth.PermRead)
}

func (h *httpAPI) leaseOp(w http.ResponseWriter, r *http.Request, kind kv.OpKind, perm auth.Perm) {
	id, err := leaseID(r.PathValue("id"))
	if err == nil {
		err = onlyQuery(r)
	}
	var s protocol.State
	if err == nil {
		s, err = h.runLease(r, kv.Op{Kind: kind, Key: kv.LeaseKey(id)}, perm)
	}
	var ans LeaseAnswer
	if err == nil {
		ans, err = leaseAnswer(id, s)
	}
	if err == nil && kind == kv.OpGet && ans.State != kv.LeaseLive.String() {
		err = kv.ErrLeaseNotFound
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func leaseAnswer(id uint64, s protocol.State) (LeaseAnswer, error) {
	l, err := kv.LeaseOf(s)
	if err != nil {
		return LeaseAnswer{}, err
	}
	return LeaseAnswer{ID: strconv.FormatUint(id, 16), TTLMillis: l.TTLMillis, State: l.State.String(), RenewedMillis: l.RenewedMillis}, nil
}
