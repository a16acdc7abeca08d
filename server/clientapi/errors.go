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
)

// Error codes are stable: clients match on them.
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
	CodeInternal        = "internal"
)

// errorClass is one row of the error table.
type errorClass struct {
	err  error
	code string
	http int
	grpc codes.Code
}

// errorTable maps every error an operation can return, in order of match.
var errorTable = []errorClass{
	{kv.ErrNotFound, CodeNotFound, http.StatusNotFound, codes.NotFound},
	{kv.ErrVersionMismatch, CodeVersionMismatch, http.StatusPreconditionFailed, codes.FailedPrecondition},
	{kv.ErrNotAnInteger, CodeNotAnInteger, http.StatusConflict, codes.FailedPrecondition},
	{kv.ErrOverflow, CodeOverflow, http.StatusConflict, codes.OutOfRange},
	{kv.ErrNoQuorum, CodeNoQuorum, http.StatusServiceUnavailable, codes.Unavailable},
	{kv.ErrUnknownOutcome, CodeUnknownOutcome, http.StatusGatewayTimeout, codes.DeadlineExceeded},
	{kv.ErrKeyTooLarge, CodeKeyTooLarge, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
	{kv.ErrValueTooLarge, CodeValueTooLarge, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
	{kv.ErrEmptyKey, CodeBadRequest, http.StatusBadRequest, codes.InvalidArgument},
	{errBadRequest, CodeBadRequest, http.StatusBadRequest, codes.InvalidArgument},
}

var internalClass = errorClass{code: CodeInternal, http: http.StatusInternalServerError, grpc: codes.Internal}

// errBadRequest marks malformed requests found by the handlers themselves.
var errBadRequest = errors.New("bad request")

// classify finds err's row, and the current version a mismatch carries.
func classify(err error) (errorClass, uint64) {
	var current uint64
	var vm *kv.VersionMismatchError
	if errors.As(err, &vm) {
		current = vm.Current
	}
	for _, c := range errorTable {
		if errors.Is(err, c.err) {
			return c, current
		}
	}
	return internalClass, current
}
