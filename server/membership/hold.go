package membership

import (
	"context"
	"errors"
	"fmt"
)

// ErrHoldInUse: a release of a membership hold whose controller still runs
// its change, or is a member that cannot be asked (without force).
var ErrHoldInUse = errors.New("caspaxos/membership: the hold cannot be released")

// Hold is the outcome of a hold release on one node: whether it was
// released, and the change that held it (empty if none did).
type Hold struct {
	Released   bool
	Controller string
	ChangeID   string
}

// HoldRelease is a hold release on the member called Name.
type HoldRelease struct {
	Name string
	Hold
}

// holdOver reports whether the change that holds a node (held) is over,
// by what its controller said: whether it stores a change (controls; nil
// when it could not tell, or predates the question) and which (changeID).
// Another change of the same controller is not the one that holds the node
// either: had it held the node, the node's state would name it.
//
// A stored change without an ID (rewritten by an earlier release, which
// drops the field) cannot be told from the one holding the node.
func holdOver(controls *bool, changeID string, held NodeState) bool {
	return controls != nil && (!*controls || changeID != "" && changeID != held.ChangeID)
}

// askController asks ctl, the controller of the change holding this node
// (held), whether it stores a change and which. ok is false when it cannot
// tell: it did not answer, or it uses an older membership than the hold
// (it lost its state: a bootstrap node restarted on an empty disk).
func (s *Standing) askController(ctx context.Context, ctl Member, held NodeState) (controls *bool, changeID string, ok bool) {
	if ctl.ID == s.cfg.Self.ID {
		controls, changeID = s.ctl.Stored()
		return controls, changeID, controls != nil
	}
	info, ok := s.memberInfo(ctx, ctl)
	if !ok || info.Version < held.Membership.Version() {
		return nil, "", false
	}
	return info.Controls, info.ChangeID, info.Controls != nil
}

// probeHold asks the controller of the change that holds this node (held)
// whether it still stores that change, and frees the node if it does not
// (Keeper.ReleaseStale). It reports whether it freed it.
func (s *Standing) probeHold(ctx context.Context, held NodeState) bool {
	// The controller as the membership lists it, or, if it removed
	// itself, as an earlier membership did: a controller gone from the
	// membership may still run its change (its catch-up), and is asked too.
	ctl, ok := s.keeper.HoldController(held)
	if !ok {
		return false // nobody to ask: an operator's `members release` frees it
	}
	controls, changeID, ok := s.askController(ctx, ctl, held)
	if !ok || !holdOver(controls, changeID, held) || s.closing.Load() {
		return false
	}
	released, err := s.keeper.ReleaseStale(held)
	if err != nil {
		s.log.Error("cannot free this node of a membership change that is over", "controller", held.Controller, "err", err)
		return false
	}
	if released {
		s.log.Warn("freed this node of a membership change its controller no longer runs (deletion GC resumes)",
			"controller", held.Controller, "change", held.ChangeID)
	}
	return released
}

// ReleaseHold frees this node of the membership change that holds it, on
// an operator's word that the change's controller is gone. It refuses
// (ErrHoldInUse) when the controller answers that it still runs that
// change, and when the controller is a member that cannot be asked,
// unless force: a member may only be unreachable for a while, and a change
// it still runs must keep the nodes it holds. A controller that is not a
// member (it removed itself) and cannot be asked is taken as gone.
func (s *Standing) ReleaseHold(ctx context.Context, force bool) (Hold, error) {
	held := s.keeper.State()
	if !held.Changing {
		return Hold{}, nil
	}
	out := Hold{Controller: held.Controller, ChangeID: held.ChangeID}
	_, member := held.Membership.ByName(held.Controller)
	answered := false
	if ctl, known := s.keeper.HoldController(held); known {
		var controls *bool
		var changeID string
		controls, changeID, answered = s.askController(ctx, ctl, held)
		if answered && !holdOver(controls, changeID, held) {
			return Hold{}, fmt.Errorf("%w: %s still runs the change (%s) that holds %s; the node is freed when it ends",
				ErrHoldInUse, held.Controller, held.ChangeID, s.cfg.Self.Name)
		}
	}
	if !answered && member && !force {
		return Hold{}, fmt.Errorf("%w: %s is held by %s's change (%s), and %s is a member that does not answer; if it is down for good, release with force",
			ErrHoldInUse, s.cfg.Self.Name, held.Controller, held.ChangeID, held.Controller)
	}
	released, err := s.keeper.ReleaseStale(held)
	if err != nil {
		return Hold{}, err
	}
	if released {
		s.log.Warn("freed this node of a membership change at an operator's request (deletion GC resumes)",
			"controller", held.Controller, "change", held.ChangeID, "force", force)
	}
	out.Released = released
	return out, nil
}

// ReleaseHolds frees the member called name (every member when name is
// empty) of the change holding it: ReleaseHold on that node, this one
// directly, the others through peers. A release refused is an error; the
// releases done are returned with it.
func (s *Standing) ReleaseHolds(ctx context.Context, name string, force bool) ([]HoldRelease, error) {
	m := s.keeper.Membership()
	targets := m.Nodes
	if name != "" {
		x, ok := m.ByName(name)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not a member", ErrHoldInUse, name)
		}
		targets = []Member{x}
	}
	var out []HoldRelease
	var errs []error
	for _, x := range targets {
		var h Hold
		var err error
		if x.ID == s.cfg.Self.ID {
			h, err = s.ReleaseHold(ctx, force)
		} else {
			h, err = s.peers.ReleaseHold(ctx, x, force)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.Name, err))
			continue
		}
		out = append(out, HoldRelease{Name: x.Name, Hold: h})
	}
	return out, errors.Join(errs...)
}
