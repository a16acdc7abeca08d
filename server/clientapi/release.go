package clientapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// HoldReleaser is what a Backend that runs membership changes also
// implements: it frees nodes of a membership change whose controller is
// gone (HTTP POST /v1/members/release; gRPC Cluster.MemberRelease;
// `caspaxos members release`).
type HoldReleaser interface {
	// ReleaseHolds frees the member called name (every member when name is
	// empty) of the change holding it, and says what it did on each. A
	// release it refuses (the controller still runs the change, or is a
	// member that does not answer and force is false) is an error; the
	// releases done are returned with it.
	ReleaseHolds(ctx context.Context, name string, force bool) ([]HoldRelease, error)
}

// HoldRelease is what a release did on one node.
type HoldRelease struct {
	Name string `json:"name"`
	// Released: the node was held by Controller's change ChangeID and is
	// free now. False with an empty Controller: it was not held.
	Released   bool   `json:"released"`
	Controller string `json:"controller,omitempty"`
	ChangeID   string `json:"change_id,omitempty"`
}

func releaseHolds(ctx context.Context, b Backend, name string, force bool) ([]HoldRelease, error) {
	hr, ok := b.(HoldReleaser)
	if !ok {
		return nil, fmt.Errorf("%w: this node runs no membership changes", errBadRequest)
	}
	out, err := hr.ReleaseHolds(ctx, name, force)
	if err != nil && !errors.Is(err, errBadRequest) {
		err = fmt.Errorf("%w: %w", errMembership, err)
	}
	return out, err
}

// releaseMembers serves POST /v1/members/release: body NAME (or empty:
// every member); ?force=true releases a hold by a member that does not
// answer. It answers {"releases":[...]}.
func (h *httpAPI) releaseMembers(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	force := false
	switch r.URL.Query().Get("force") {
	case "", "false":
	case "true":
		force = true
	default:
		writeError(w, fmt.Errorf("%w: force must be true or false", errBadRequest), 0)
		return
	}
	out, err := releaseHolds(r.Context(), h.b, strings.TrimSpace(string(body)), force)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if out == nil {
		out = []HoldRelease{}
	}
	writeJSON(w, http.StatusOK, map[string][]HoldRelease{"releases": out})
}

// MemberRelease serves Cluster.MemberRelease.
func (g *grpcAPI) MemberRelease(ctx context.Context, r *caspaxospb.MemberReleaseRequest) (*caspaxospb.MemberReleaseResponse, error) {
	if err := g.requireAdmin(ctx); err != nil {
		return nil, err
	}
	out, err := releaseHolds(ctx, g.b, r.GetName(), r.GetForce())
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &caspaxospb.MemberReleaseResponse{}
	for _, x := range out {
		resp.Releases = append(resp.Releases, &caspaxospb.HoldRelease{Name: x.Name, Released: x.Released, Controller: x.Controller, ChangeId: x.ChangeID})
	}
	return resp, nil
}
