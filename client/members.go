package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// Membership is the cluster as the answering node sees it.
type Membership struct {
	ConfigVersion uint64   `json:"config_version"`
	Members       []Member `json:"members"`
	// Change is the membership change that node runs, nil if none.
	Change *MemberChange `json:"change,omitempty"`
}

// MemberChange is a membership change in progress.
type MemberChange struct {
	Op     string `json:"op"` // "add" or "remove"
	Target string `json:"target"`
	// Step of Steps is being applied, towards configuration Version.
	Step    int    `json:"step"`
	Steps   int    `json:"steps"`
	Version uint64 `json:"version"`
	// CatchUpDone of CatchUpTotal keys were rewritten by the catch-up.
	CatchUpDone  uint64 `json:"catch_up_done"`
	CatchUpTotal uint64 `json:"catch_up_total"`
	// Error is the step's last failure; it is being retried.
	Error string `json:"error,omitempty"`
}

// Membership returns the members, the configuration version and a change
// in progress, as the answering node sees them.
func (c *Client) Membership(ctx context.Context) (Membership, error) {
	var out Membership
	err := c.call(ctx, true, func(conn *grpc.ClientConn) error {
		r, err := caspaxospb.NewClusterClient(conn).Members(ctx, &caspaxospb.MembersRequest{})
		out = membership(r)
		return err
	})
	return out, err
}

// MemberAdd adds the node serving peerAddr (started with `caspaxos serve
// --join`) under name, and returns the membership after it. The answering
// node runs the change and answers once every step is done, which takes a
// catch-up over every key: ctx's deadline bounds the wait. Errors:
// ErrMembership when the change was refused or failed (the name or address
// is in use, another change is in progress, the node at peerAddr has
// another name, ...); ErrUnknownOutcome when ctx ended or the connection
// broke first: the change may go on, and Membership shows it. A change is
// never sent twice.
func (c *Client) MemberAdd(ctx context.Context, name, peerAddr string) (Membership, error) {
	return c.changeMembers(ctx, func(cl caspaxospb.ClusterClient) (*caspaxospb.MembersResponse, error) {
		return cl.MemberAdd(ctx, &caspaxospb.MemberAddRequest{Name: name, PeerAddr: peerAddr})
	})
}

// MemberRemove removes the member called name, which may be down for good
// (a lost disk: remove it, then add it back started with --join on an empty
// data directory). See MemberAdd.
func (c *Client) MemberRemove(ctx context.Context, name string) (Membership, error) {
	return c.changeMembers(ctx, func(cl caspaxospb.ClusterClient) (*caspaxospb.MembersResponse, error) {
		return cl.MemberRemove(ctx, &caspaxospb.MemberRemoveRequest{Name: name})
	})
}

func (c *Client) changeMembers(ctx context.Context, fn func(caspaxospb.ClusterClient) (*caspaxospb.MembersResponse, error)) (Membership, error) {
	var out Membership
	err := c.call(ctx, false, func(conn *grpc.ClientConn) error {
		r, err := fn(caspaxospb.NewClusterClient(conn))
		out = membership(r)
		return err
	})
	return out, err
}

func membership(r *caspaxospb.MembersResponse) Membership {
	out := Membership{ConfigVersion: r.GetConfigVersion()}
	for _, m := range r.GetMembers() {
		out.Members = append(out.Members, Member{Name: m.GetName(), ID: m.GetId(), PeerAddr: m.GetPeerAddr(), ClientAddr: m.GetClientAddr(), Reachable: m.GetReachable()})
	}
	if ch := r.GetChange(); ch != nil {
		out.Change = &MemberChange{Op: ch.GetOp(), Target: ch.GetTarget(), Step: int(ch.GetStep()), Steps: int(ch.GetSteps()),
			Version: ch.GetVersion(), CatchUpDone: ch.GetCatchUpDone(), CatchUpTotal: ch.GetCatchUpTotal(), Error: ch.GetError()}
	}
	return out
}

// HoldRelease is what MemberRelease did on one node.
type HoldRelease struct {
	Name string `json:"name"`
	// Released: the node was held by Controller's change ChangeID and is
	// free now. False with an empty Controller: it was not held.
	Released   bool   `json:"released"`
	Controller string `json:"controller,omitempty"`
	ChangeID   string `json:"change_id,omitempty"`
}

// MemberRelease frees the member called name (every member when name is
// empty) of a membership change whose controller is gone: one that removed
// itself, or, with force, a member down for good. A node held by a change
// its controller still runs is refused with ErrMembership, and so, without
// force, is one held by a member that does not answer.
func (c *Client) MemberRelease(ctx context.Context, name string, force bool) ([]HoldRelease, error) {
	var out []HoldRelease
	err := c.call(ctx, false, func(conn *grpc.ClientConn) error {
		r, err := caspaxospb.NewClusterClient(conn).MemberRelease(ctx, &caspaxospb.MemberReleaseRequest{Name: name, Force: force})
		for _, x := range r.GetReleases() {
			out = append(out, HoldRelease{Name: x.GetName(), Released: x.GetReleased(), Controller: x.GetController(), ChangeID: x.GetChangeId()})
		}
		return err
	})
	return out, err
}
