package clientapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// GET /v1/status answers HTTPConfig.Status's figures of this node
// (server/status; `caspaxos status`, the status page). They tell of the
// whole store (its registers, its load), so with auth on the caller needs
// read on every key (a read grant on the empty prefix) or admin.
// GET /ui/ serves HTTPConfig.UI, open: the page itself holds no data, and
// its scripts call the API with the user's token.

func (h *httpAPI) statusRoutes(mux *http.ServeMux) {
	if h.cfg.Status != nil {
		mux.HandleFunc("GET /v1/status", h.status)
	}
	if h.cfg.UI != nil {
		mux.Handle("GET /ui/", h.cfg.UI)
		mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
}

// statusAccess: read on every key, else admin.
var statusAccess = []auth.Access{{Perm: auth.PermRead, Key: ""}, adminAccess}

func (h *httpAPI) status(w http.ResponseWriter, r *http.Request) {
	if err := onlyQuery(r); err != nil {
		writeError(w, err, 0)
		return
	}
	ctx := r.Context()
	p, err := authenticate(ctx, h.cfg.Guard, HTTPCredentials(r))
	if err == nil {
		for _, a := range statusAccess {
			if err = authorize(ctx, h.cfg.Guard, p, a); !errors.Is(err, kv.ErrPermissionDenied) {
				break
			}
		}
		if errors.Is(err, kv.ErrPermissionDenied) {
			err = fmt.Errorf("%w: the status needs read on every key (the empty prefix), or admin", kv.ErrPermissionDenied)
		}
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	writeJSON(w, http.StatusOK, h.cfg.Status(ctx))
}
