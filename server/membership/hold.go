package membership

import "errors"

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
