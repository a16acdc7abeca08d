package clientapi

import (
	"context"
	"net/http"
	"strings"
)

// MemberChanger is what a Backend that runs membership changes also
// implements (a networked node; the embedded store does not): the HTTP
// service then serves POST /v1/members and DELETE /v1/members/{name}.
type MemberChanger interface {
	// AddMember adds the node at peer address addr under name and returns
	// once the change is done; if ctx ends first the change goes on.
	AddMember(ctx context.Context, name, addr string) error
	// RemoveMember removes the member called name; see AddMember.
	RemoveMember(ctx context.Context, name string) error
}

// MemberChange is a membership change in progress, as GET /v1/members shows it.
type MemberChange struct {
	Op     string `json:"op"`
	Target string `json:"target"`
	// Step of Steps is being applied; Version is its configuration version.
	Step    int    `json:"step"`
	Steps   int    `json:"steps"`
	Version uint64 `json:"version"`
	// CatchUpDone of CatchUpTotal keys were rewritten by the catch-up.
	CatchUpDone  uint64 `json:"catch_up_done"`
	CatchUpTotal uint64 `json:"catch_up_total"`
	Error        string `json:"error,omitempty"`
}

// addMember serves POST /v1/members with the body NAME=PEER_ADDR.
func (h *httpAPI) addMember(w http.ResponseWriter, r *http.Request) {
	mc, ok := h.b.(MemberChanger)
	if !ok {
		http.NotFound(w, r)
		return
	}
	body := make([]byte, 4096)
	n, _ := r.Body.Read(body)
	name, addr, ok := strings.Cut(strings.TrimSpace(string(body[:n])), "=")
	if !ok || name == "" || addr == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": CodeBadRequest, "message": "the body must be NAME=PEER_ADDR"}})
		return
	}
	if err := mc.AddMember(r.Context(), name, addr); err != nil {
		writeJSON(w, http.StatusConflict, map[string]any{"error": map[string]string{"code": "membership", "message": err.Error()}})
		return
	}
	h.members(w, r)
}

// removeMember serves DELETE /v1/members/{name}.
func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request) {
	mc, ok := h.b.(MemberChanger)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if err := mc.RemoveMember(r.Context(), r.PathValue("name")); err != nil {
		writeJSON(w, http.StatusConflict, map[string]any{"error": map[string]string{"code": "membership", "message": err.Error()}})
		return
	}
	h.members(w, r)
}
