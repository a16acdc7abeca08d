package clientapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
)

// MemberChanger is what a Backend that runs membership changes also
// implements (a networked node; the embedded store does not): both
// services then add and remove members (HTTP POST /v1/members and DELETE
// /v1/members/{name}; gRPC Cluster.MemberAdd and MemberRemove).
type MemberChanger interface {
	// AddMember adds the node at peer address addr under name and returns
	// once the change is done; if ctx ends first the change goes on, and
	// the error wraps ctx's.
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

// CodeMembership: a membership change was refused (the name or address is
// in use or unknown, another change is in progress, ...) or failed.
const CodeMembership = "membership"

// errMembership marks the errors of a membership change (CodeMembership).
var errMembership = errors.New("membership change")

// memberChange is a request to add (Addr set) or remove a member.
type memberChange struct {
	add        bool
	name, addr string
}

// changeMembers runs a membership change for both services and returns
// the membership after it. A change whose ctx ended before it was done is
// of unknown outcome: it goes on in the cluster.
func changeMembers(ctx context.Context, b Backend, c memberChange) (Membership, error) {
	mc, ok := b.(MemberChanger)
	if !ok {
		return Membership{}, fmt.Errorf("%w: this node runs no membership changes", errBadRequest)
	}
	if c.name == "" || (c.add && c.addr == "") {
		return Membership{}, fmt.Errorf("%w: a member needs a name and, to be added, a peer address (NAME=PEER_ADDR)", errBadRequest)
	}
	var err error
	if c.add {
		err = mc.AddMember(ctx, c.name, c.addr)
	} else {
		err = mc.RemoveMember(ctx, c.name)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Membership{}, fmt.Errorf("%w: %w", kv.ErrUnknownOutcome, err)
	case err != nil:
		return Membership{}, fmt.Errorf("%w: %w", errMembership, err)
	}
	return b.Members(ctx)
}

// memberAnswerWriteTimeout bounds writing a membership change's answer.
const memberAnswerWriteTimeout = 30 * time.Second

// addMember serves POST /v1/members with the body NAME=PEER_ADDR.
func (h *httpAPI) addMember(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	name, addr, _ := strings.Cut(strings.TrimSpace(string(body)), "=")
	h.changeMembers(w, r, memberChange{add: true, name: name, addr: addr})
}

// removeMember serves DELETE /v1/members/{name}.
func (h *httpAPI) removeMember(w http.ResponseWriter, r *http.Request) {
	h.changeMembers(w, r, memberChange{name: r.PathValue("name")})
}

func (h *httpAPI) changeMembers(w http.ResponseWriter, r *http.Request, c memberChange) {
	m, err := changeMembers(r.Context(), h.b, c)
	// A change answers once done, which may be past the server's
	// WriteTimeout (a catch-up of many keys): the answer's write gets a
	// deadline of its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(memberAnswerWriteTimeout))
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// MemberAdd serves Cluster.MemberAdd; the caller's deadline bounds the wait.
func (g *grpcAPI) MemberAdd(ctx context.Context, r *caspaxospb.MemberAddRequest) (*caspaxospb.MembersResponse, error) {
	return g.changeMembers(ctx, memberChange{add: true, name: r.GetName(), addr: r.GetPeerAddr()})
}

// MemberRemove serves Cluster.MemberRemove; see MemberAdd.
func (g *grpcAPI) MemberRemove(ctx context.Context, r *caspaxospb.MemberRemoveRequest) (*caspaxospb.MembersResponse, error) {
	return g.changeMembers(ctx, memberChange{name: r.GetName()})
}

func (g *grpcAPI) changeMembers(ctx context.Context, c memberChange) (*caspaxospb.MembersResponse, error) {
	if err := g.requireAdmin(ctx); err != nil {
		return nil, err
	}
	m, err := changeMembers(ctx, g.b, c)
	if err != nil {
		return nil, statusOf(err)
	}
	return membersProto(m), nil
}

func membersProto(m Membership) *caspaxospb.MembersResponse {
	out := &caspaxospb.MembersResponse{ConfigVersion: m.ConfigVersion, SelfId: m.SelfID}
	for _, x := range m.Members {
		out.Members = append(out.Members, &caspaxospb.Member{
			Name: x.Name, Id: x.ID, PeerAddr: x.PeerAddr, ClientAddr: x.ClientAddr, Reachable: x.Reachable,
		})
	}
	if c := m.Change; c != nil {
		out.Change = &caspaxospb.MemberChange{Op: c.Op, Target: c.Target, Step: uint32(c.Step), Steps: uint32(c.Steps),
			Version: c.Version, CatchUpDone: c.CatchUpDone, CatchUpTotal: c.CatchUpTotal, Error: c.Error}
	}
	return out
}
