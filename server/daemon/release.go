package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/membership"
)

// askController asks ctl, the controller of the change holding this node
// (held), whether it stores a change and which. ok is false when it cannot
// tell: it did not answer, or it uses an older membership than the hold
// (it lost its state: a bootstrap node restarted on an empty disk).
func (d *Daemon) askController(ctx context.Context, ctl membership.Member, held membership.NodeState) (controls *bool, changeID string, ok bool) {
	if ctl.ID == d.id {
		controls, changeID = d.storedChange()
		return controls, changeID, controls != nil
	}
	info, ok := d.memberInfo(ctx, ctl)
	if !ok || info.Version < held.Membership.Version() {
		return nil, "", false
	}
	return info.Controls, info.ChangeID, info.Controls != nil
}

// releaseHold frees this node of the membership change that holds it, on
// an operator's word that the change's controller is gone. It refuses
// (membership.ErrHoldInUse) when the controller answers that it still runs that
// change, and when the controller is a member that cannot be asked,
// unless force: a member may only be unreachable for a while, and a change
// it still runs must keep the nodes it holds. A controller that is not a
// member (it removed itself) and cannot be asked is taken as gone.
func (d *Daemon) releaseHold(ctx context.Context, force bool) (released bool, held membership.NodeState, err error) {
	held = d.members.State()
	if !held.Changing {
		return false, held, nil
	}
	_, member := held.Membership.ByName(held.Controller)
	answered := false
	if ctl, known := d.members.HoldController(held); known {
		var controls *bool
		var changeID string
		controls, changeID, answered = d.askController(ctx, ctl, held)
		if answered && !holdOver(controls, changeID, held) {
			return false, held, fmt.Errorf("%w: %s still runs the change (%s) that holds %s; the node is freed when it ends",
				membership.ErrHoldInUse, held.Controller, held.ChangeID, d.cfg.Name)
		}
	}
	if !answered && member && !force {
		return false, held, fmt.Errorf("%w: %s is held by %s's change (%s), and %s is a member that does not answer; if it is down for good, release with force",
			membership.ErrHoldInUse, d.cfg.Name, held.Controller, held.ChangeID, held.Controller)
	}
	released, err = d.members.ReleaseStale(held)
	if err != nil {
		return false, held, err
	}
	if released {
		d.log.Warn("freed this node of a membership change at an operator's request (deletion GC resumes)",
			"controller", held.Controller, "change", held.ChangeID, "force", force)
	}
	return released, held, nil
}

// ReleaseHolds implements clientapi.HoldReleaser: it frees the member
// called name (every member when name is empty) of the change holding it
// (releaseHold, on that node through the Admin service).
func (d *Daemon) ReleaseHolds(ctx context.Context, name string, force bool) ([]clientapi.HoldRelease, error) {
	m := d.members.Membership()
	targets := m.Nodes
	if name != "" {
		x, ok := m.ByName(name)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not a member", membership.ErrHoldInUse, name)
		}
		targets = []membership.Member{x}
	}
	var out []clientapi.HoldRelease
	var errs []error
	for _, x := range targets {
		r := clientapi.HoldRelease{Name: x.Name}
		var err error
		if x.ID == d.id {
			var held membership.NodeState
			r.Released, held, err = d.releaseHold(ctx, force)
			if held.Changing {
				r.Controller, r.ChangeID = held.Controller, held.ChangeID
			}
		} else {
			err = d.releaseHoldAt(ctx, x, force, &r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.Name, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// releaseHoldAt runs releaseHold on member x.
func (d *Daemon) releaseHoldAt(ctx context.Context, x membership.Member, force bool, r *clientapi.HoldRelease) error {
	h, err := d.admin.ReleaseHold(ctx, x.PeerAddr, force)
	if err != nil {
		return err
	}
	r.Released, r.Controller, r.ChangeID = h.Released, h.Controller, h.ChangeID
	return nil
}
