package kv

import (
	"errors"
	"fmt"
)

// Stable error codes: the HTTP and gRPC APIs report them and the peers
// carry them for forwarded operations.
const (
	CodeNotFound        = "not_found"
	CodeVersionMismatch = "version_mismatch"
	CodeNotAnInteger    = "not_an_integer"
	CodeOverflow        = "overflow"
	CodeNoQuorum        = "no_quorum"
	CodeUnknownOutcome  = "unknown_outcome"
	CodeKeyTooLarge     = "key_too_large"
	CodeValueTooLarge   = "value_too_large"
	CodeBadRequest      = "bad_request"
	CodeNoSpace         = "no_space"
	CodeInternal        = "internal"
	CodeOverloaded      = "overloaded"
	// Auth is enabled and the request carried no valid credentials.
	CodeUnauthenticated = "unauthenticated"
	// The authenticated user lacks the permission the request needs.
	CodePermissionDenied = "permission_denied"
	// Exactly-once writes (request.go).
	CodeRequestExpired    = "request_expired"
	CodeRequestFromFuture = "request_from_future"
	CodeRequestNotApplied = "request_not_applied"
	// Leases (lease.go).
	CodeLeaseNotFound   = "lease_not_found"
	CodeLeaseExists     = "lease_exists"
	CodeLeaseNotExpired = "lease_not_expired"
	// Locks and elections (lock.go).
	CodeLocked        = "locked"
	CodeNotLockHolder = "not_lock_holder"
	// A Consul key's acquire and release (keylock.go).
	CodeKeyHeld    = "key_held"
	CodeKeyNotHeld = "key_not_held"
)

var codes = []struct {
	err  error
	code string
}{
	{ErrNotFound, CodeNotFound},
	{ErrVersionMismatch, CodeVersionMismatch},
	{ErrNotAnInteger, CodeNotAnInteger},
	{ErrOverflow, CodeOverflow},
	// Before ErrNoQuorum: an error may wrap both (server.Proposer's
	// driver did not take a request in time), and overloaded says more.
	{ErrOverloaded, CodeOverloaded},
	{ErrNoQuorum, CodeNoQuorum},
	{ErrUnknownOutcome, CodeUnknownOutcome},
	{ErrKeyTooLarge, CodeKeyTooLarge},
	{ErrValueTooLarge, CodeValueTooLarge},
	{ErrEmptyKey, CodeBadRequest},
	{ErrNoSpace, CodeNoSpace},
	{ErrReservedKey, CodeBadRequest},
	{ErrUnauthenticated, CodeUnauthenticated},
	{ErrPermissionDenied, CodePermissionDenied},
	{ErrBadRequestID, CodeBadRequest},
	{ErrRequestExpired, CodeRequestExpired},
	{ErrRequestFromFuture, CodeRequestFromFuture},
	{ErrRequestNotApplied, CodeRequestNotApplied},
	{ErrLeaseNotFound, CodeLeaseNotFound},
	{ErrLeaseExists, CodeLeaseExists},
	{ErrLeaseNotExpired, CodeLeaseNotExpired},
	{ErrBadLease, CodeBadRequest},
	{ErrLocked, CodeLocked},
	{ErrNotLockHolder, CodeNotLockHolder},
	{ErrBadLock, CodeBadRequest},
	{ErrKeyHeld, CodeKeyHeld},
	{ErrKeyNotHeld, CodeKeyNotHeld},
}

// Code returns err's stable code (CodeInternal for an error of no class
// here) and, for a version mismatch, the current version it carries.
func Code(err error) (code string, current uint64) {
	var vm *VersionMismatchError
	if errors.As(err, &vm) {
		return CodeVersionMismatch, vm.Current
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, 0
		}
	}
	return CodeInternal, 0
}

// FromCode rebuilds an error from its code, so that errors.Is works on the
// far side of a network hop; current and expected matter for a mismatch.
func FromCode(code, message string, current, expected uint64) error {
	if code == CodeVersionMismatch {
		return &VersionMismatchError{Expected: expected, Current: current}
	}
	for _, c := range codes {
		if c.code == code {
			return fmt.Errorf("%w (%s)", c.err, message)
		}
	}
	return fmt.Errorf("caspaxos: remote error %s: %s", code, message)
}
