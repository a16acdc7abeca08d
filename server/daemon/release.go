package daemon

import (
	"context"

	"github.com/caspaxos/caspaxos/server/clientapi"
)

// ReleaseHolds implements clientapi.HoldReleaser: it frees the member
// called name (every member when name is empty) of the change holding it
// (membership.Standing.ReleaseHolds).
func (d *Daemon) ReleaseHolds(ctx context.Context, name string, force bool) ([]clientapi.HoldRelease, error) {
	rs, err := d.standing.ReleaseHolds(ctx, name, force)
	var out []clientapi.HoldRelease
	for _, r := range rs {
		out = append(out, clientapi.HoldRelease{Name: r.Name, Released: r.Released, Controller: r.Controller, ChangeID: r.ChangeID})
	}
	return out, err
}
