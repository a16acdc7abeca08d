package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// Errors a call may return; match them with errors.Is. Every error a server
// reports carries one of these; anything else is a connection problem.
var (
	// ErrNotFound: the key is absent or deleted.
	ErrNotFound = errors.New("caspaxos/client: key not found")
	// ErrVersionMismatch: a version condition failed; the error is a
	// *VersionMismatchError carrying the key's current version.
	ErrVersionMismatch = errors.New("caspaxos/client: version mismatch")
	// ErrNotAnInteger: Increment found a value that is not a decimal int64.
	ErrNotAnInteger = errors.New("caspaxos/client: value is not an integer")
	// ErrOverflow: Increment would leave the int64 range.
	ErrOverflow = errors.New("caspaxos/client: integer overflow")
	// ErrNoQuorum: the cluster could not reach a quorum; nothing was applied.
	ErrNoQuorum = errors.New("caspaxos/client: no quorum: nothing was applied")
	// ErrOverloaded: the node refused the request because it runs as many
	// requests as it may at once; nothing was applied, so the request may
	// be retried (later, or at another endpoint).
	ErrOverloaded = errors.New("caspaxos/client: node overloaded: nothing was applied")
	// ErrUnknownOutcome: the write may or may not have been applied (the
	// deadline passed after it was sent, or the connection broke while it
	// was in flight). A write with a request ID (the default) is retried
	// with it while the caller's deadline and the idempotency window
	// allow (idempotent.go); this is returned only when they do not.
	ErrUnknownOutcome = errors.New("caspaxos/client: outcome unknown: the write may or may not take effect")
	// ErrTooLarge: the key or value is over the server's limit.
	ErrTooLarge = errors.New("caspaxos/client: key or value too large")
	// ErrBadRequest: the server refused the request as malformed.
	ErrBadRequest = errors.New("caspaxos/client: bad request")
	// ErrMembership: a membership change was refused or failed (the name
	// or address is in use or unknown, another change is in progress, ...).
	ErrMembership = errors.New("caspaxos/client: membership change refused")
	// ErrNoSpace: the node's disk is nearly full, or its store is over its
	// quota: it refuses puts, creates, compare-and-swaps and increments
	// (nothing was applied); gets and deletes still work.
	ErrNoSpace = errors.New("caspaxos/client: no space on the server: nothing was applied")
	// ErrUnauthenticated: auth is enabled and the call carried no valid
	// credentials (no user, a wrong password, an expired token); nothing
	// was applied.
	ErrUnauthenticated = errors.New("caspaxos/client: unauthenticated")
	// ErrPermissionDenied: the user lacks the permission the call needs;
	// nothing was applied.
	ErrPermissionDenied = errors.New("caspaxos/client: permission denied")
	// ErrRequestExpired: a write's request ID is older than the cluster's
	// idempotency window, so the cluster cannot tell a retry from a second
	// apply and refused it; nothing was applied by this attempt (an
	// earlier one may have been).
	ErrRequestExpired = errors.New("caspaxos/client: request expired: too old to retry safely")
	// ErrRequestFromFuture: the write's request ID is stamped ahead of the
	// node's clock by more than the allowed skew (check this machine's
	// clock); nothing was applied.
	ErrRequestFromFuture = errors.New("caspaxos/client: request ID from the future: check the clock")
	// ErrRequestNotApplied: an outcome query declared the write not
	// applied; it never will be.
	ErrRequestNotApplied = errors.New("caspaxos/client: request declared not applied by an outcome query")
	// ErrUnavailable: no endpoint could be reached.
	ErrUnavailable = errors.New("caspaxos/client: no endpoint reachable")
)

// VersionMismatchError is a failed compare-and-swap, create or conditional delete.
type VersionMismatchError struct {
	Current uint64 // the key's version (0: absent)
	Message string
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("caspaxos/client: version mismatch (current version %d): %s", e.Current, e.Message)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }

// codeOverloaded is the code of a node's refusal at its bound of requests
// in flight: nothing was applied, so any call may move on.
const codeOverloaded = "overloaded"

var byCode = map[string]error{
	"not_found":           ErrNotFound,
	"not_an_integer":      ErrNotAnInteger,
	"overflow":            ErrOverflow,
	"no_quorum":           ErrNoQuorum,
	codeOverloaded:        ErrOverloaded,
	"unknown_outcome":     ErrUnknownOutcome,
	"key_too_large":       ErrTooLarge,
	"value_too_large":     ErrTooLarge,
	"bad_request":         ErrBadRequest,
	"membership":          ErrMembership,
	"no_space":            ErrNoSpace,
	"unauthenticated":     ErrUnauthenticated,
	"permission_denied":   ErrPermissionDenied,
	"request_expired":     ErrRequestExpired,
	"request_from_future": ErrRequestFromFuture,
	"request_not_applied": ErrRequestNotApplied,
	"lease_not_found":     ErrLeaseNotFound,
	"lease_exists":        ErrLeaseExists,
	"locked":              ErrLocked,
	"not_lock_holder":     ErrNotLockHolder,
}

// fromInfo turns the ErrorInfo of a server's answer, and its message, into
// a typed error.
func fromInfo(info *caspaxospb.ErrorInfo, msg string) error {
	if info.GetCode() == "version_mismatch" {
		return &VersionMismatchError{Current: info.GetCurrentVersion(), Message: msg}
	}
	if e, ok := byCode[info.GetCode()]; ok {
		return fmt.Errorf("%w: %s", e, msg)
	}
	return fmt.Errorf("caspaxos/client: server error %s: %s", info.GetCode(), msg)
}

// fromStatus turns a server's answer into a typed error. It reports false
// when err carries no ErrorInfo: the call did not get a server's answer.
func fromStatus(err error) (error, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return err, false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*caspaxospb.ErrorInfo); ok {
			return fromInfo(info, st.Message()), true
		}
	}
	if st.Code() == codes.Unimplemented || st.Code() == codes.InvalidArgument {
		return fmt.Errorf("%w: %s", ErrBadRequest, st.Message()), true
	}
	return err, false
}
