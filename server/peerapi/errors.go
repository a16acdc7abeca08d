package peerapi

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/membership"
)

// errBadRequest marks a request the service refuses as malformed.
var errBadRequest = errors.New("caspaxos/peerapi: bad request")

// unavailable marks an error the service answers as codes.Unavailable with
// the error's own message: a node that does not serve yet.
type unavailable struct{ err error }

func (u unavailable) Error() string { return u.err.Error() }
func (u unavailable) Unwrap() error { return u.err }

// Unavailable marks err as a refusal for now: the caller may retry the
// same request later, here or elsewhere (codes.Unavailable).
func Unavailable(err error) error { return unavailable{err} }

// codeOf is the one table from an error a node returned to the code its
// peer sees; fallback is the code of an error not in it. A peer's client
// turns the code back into the same error (fromStatus), so that a caller
// on the other side can tell them apart with errors.Is.
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{membership.ErrMembershipHeld, codes.Aborted},
	{membership.ErrMembershipOlder, codes.OutOfRange},
	{membership.ErrMembershipConflict, codes.AlreadyExists},
	{membership.ErrHoldInUse, codes.FailedPrecondition},
	{protocol.ErrExhausted, codes.InvalidArgument},
	{acceptor.ErrFenceTooHigh, codes.InvalidArgument},
	{errBadRequest, codes.InvalidArgument},
}

// toStatus returns err as the gRPC status a peer receives.
func toStatus(err error, fallback codes.Code) error {
	var u unavailable
	if errors.As(err, &u) {
		return status.Error(codes.Unavailable, err.Error())
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return status.Error(c.code, err.Error())
		}
	}
	return status.Error(fallback, err.Error())
}

// fromStatus turns a status a peer answered back into the error of
// codeOf that it stands for, where one does unambiguously; otherwise it
// returns err as it is.
func fromStatus(err error, want ...error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, w := range want {
		for _, c := range codeOf {
			if c.err == w && c.code == st.Code() {
				return fmt.Errorf("%w: %s", w, st.Message())
			}
		}
	}
	return err
}
