// Package clientapi serves the client API of a caspaxos node: HTTP/JSON
// (curl is a complete client) and gRPC. Handlers are thin: they check the
// request, run one operation on a Backend, and map the outcome through one
// error table shared by both protocols.
package clientapi

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// The stable error codes clients match on (kv defines them).
const (
	CodeNotFound         = kv.CodeNotFound
	CodeVersionMismatch  = kv.CodeVersionMismatch
	CodeNotAnInteger     = kv.CodeNotAnInteger
	CodeOverflow         = kv.CodeOverflow
	CodeNoQuorum         = kv.CodeNoQuorum
	CodeUnknownOutcome   = kv.CodeUnknownOutcome
	CodeKeyTooLarge      = kv.CodeKeyTooLarge
	CodeValueTooLarge    = kv.CodeValueTooLarge
	CodeBadRequest       = kv.CodeBadRequest
	CodeNoSpace          = kv.CodeNoSpace
	CodeInternal         = kv.CodeInternal
	CodeOverloaded       = kv.CodeOverloaded
	CodeUnauthenticated  = kv.CodeUnauthenticated
	CodePermissionDenied = kv.CodePermissionDenied
	// Exactly-once writes (kv/request.go).
	CodeRequestExpired    = kv.CodeRequestExpired
	CodeRequestFromFuture = kv.CodeRequestFromFuture
	CodeRequestNotApplied = kv.CodeRequestNotApplied
	// Leases (kv/lease.go).
	CodeLeaseNotFound   = kv.CodeLeaseNotFound
	CodeLeaseExists     = kv.CodeLeaseExists
	CodeLeaseNotExpired = kv.CodeLeaseNotExpired
	// Locks and elections (kv/lock.go).
	CodeLocked        = kv.CodeLocked
	CodeNotLockHolder = kv.CodeNotLockHolder
	// A Consul key's acquire and release (kv/keylock.go; the Consul API only).
	CodeKeyHeld    = kv.CodeKeyHeld
	CodeKeyNotHeld = kv.CodeKeyNotHeld
)

// errorClass is one row of the error table: a code and its statuses.
type errorClass struct {
	code string
	http int
	grpc codes.Code
}

var errorTable = map[string]errorClass{
	CodeNotFound:         {CodeNotFound, http.StatusNotFound, codes.NotFound},
	CodeVersionMismatch:  {CodeVersionMismatch, http.StatusPreconditionFailed, codes.FailedPrecondition},
	CodeNotAnInteger:     {CodeNotAnInteger, http.StatusConflict, codes.FailedPrecondition},
	CodeOverflow:         {CodeOverflow, http.StatusConflict, codes.OutOfRange},
	CodeNoQuorum:         {CodeNoQuorum, http.StatusServiceUnavailable, codes.Unavailable},
	CodeUnknownOutcome:   {CodeUnknownOutcome, http.StatusGatewayTimeout, codes.DeadlineExceeded},
	CodeKeyTooLarge:      {CodeKeyTooLarge, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
	CodeValueTooLarge:    {CodeValueTooLarge, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
	CodeBadRequest:       {CodeBadRequest, http.StatusBadRequest, codes.InvalidArgument},
	CodeNoSpace:          {CodeNoSpace, http.StatusInsufficientStorage, codes.ResourceExhausted},
	CodeInternal:         {CodeInternal, http.StatusInternalServerError, codes.Internal},
	CodeMembership:       {CodeMembership, http.StatusConflict, codes.FailedPrecondition},
	CodeOverloaded:       {CodeOverloaded, http.StatusTooManyRequests, codes.ResourceExhausted},
	CodeUnauthenticated:  {CodeUnauthenticated, http.StatusUnauthorized, codes.Unauthenticated},
	CodePermissionDenied: {CodePermissionDenied, http.StatusForbidden, codes.PermissionDenied},
	// Exactly-once writes: the request cannot be run (again) safely.
	CodeRequestExpired:    {CodeRequestExpired, http.StatusUnprocessableEntity, codes.FailedPrecondition},
	CodeRequestFromFuture: {CodeRequestFromFuture, http.StatusUnprocessableEntity, codes.FailedPrecondition},
	CodeRequestNotApplied: {CodeRequestNotApplied, http.StatusConflict, codes.Aborted},
	CodeLeaseNotFound:     {CodeLeaseNotFound, http.StatusNotFound, codes.NotFound},
	CodeLeaseExists:       {CodeLeaseExists, http.StatusConflict, codes.AlreadyExists},
	CodeLeaseNotExpired:   {CodeLeaseNotExpired, http.StatusConflict, codes.FailedPrecondition},
	// Locks: held by another, or the caller's hold is gone.
	CodeLocked:        {CodeLocked, http.StatusConflict, codes.Aborted},
	CodeNotLockHolder: {CodeNotLockHolder, http.StatusConflict, codes.FailedPrecondition},
	CodeKeyHeld:       {CodeKeyHeld, http.StatusConflict, codes.FailedPrecondition},
	CodeKeyNotHeld:    {CodeKeyNotHeld, http.StatusConflict, codes.FailedPrecondition},
}

// errBadRequest marks malformed requests found by the handlers themselves.
var errBadRequest = errors.New("bad request")

// classify finds err's row, and the current version a mismatch carries.
func classify(err error) (errorClass, uint64) {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, auth.ErrRefused):
		return errorTable[CodeBadRequest], 0
	case errors.Is(err, errMembership):
		return errorTable[CodeMembership], 0
	}
	code, current := kv.Code(err)
	return errorTable[code], current
}

// errOutcomeLost: an outcome query's state lacks the ID it recorded.
var errOutcomeLost = errors.New("caspaxos: the outcome query's state does not hold its request ID")
