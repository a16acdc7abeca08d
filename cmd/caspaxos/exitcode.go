package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caspaxos/caspaxos/client"
)

// Exit codes of the binary; exitCodes documents them.
const (
	exitOK             = 0
	exitError          = 1
	exitUsage          = 2
	exitNotFound       = 3
	exitMismatch       = 4
	exitNoQuorum       = 5
	exitUnknownOutcome = 6
	exitUnavailable    = 7
	exitNotInteger     = 8
	exitOverloaded     = 9
	exitNoSpace        = 10
	exitLocked         = 11
)

// errUnhealthy: the node answered health and reported that it does not
// reach a quorum of acceptors.
var errUnhealthy = errors.New("unhealthy")

// exitRow is one row of the exit-code table: the errors (matched with
// errors.Is) that lead to code, and what the code means.
type exitRow struct {
	code    int
	errs    []error
	meaning string
}

// exitCodes is the one table that both exitCode and the root help use.
// Codes 0, 1 and 2 match no client error: 2 is a *usageError, 1 anything
// not listed (including client.ErrTooLarge and client.ErrBadRequest).
func exitCodes() []exitRow {
	return []exitRow{
		{exitOK, nil, "success"},
		{exitError, nil, "any other error (a key or value over the server's limit, a request the server refused, a failure to read stdin, ...)"},
		{exitUsage, nil, "usage error: unknown command or flag, wrong number of arguments, an argument that does not parse"},
		{exitNotFound, []error{client.ErrNotFound, client.ErrLeaseNotFound}, "key not found (get, del), or lease not found, expired or revoked (lease)"},
		{exitMismatch, []error{client.ErrVersionMismatch}, "version mismatch: cas, put or del with --if-version, or create of a key that exists"},
		{exitNoQuorum, []error{client.ErrNoQuorum, errUnhealthy}, "no quorum: the cluster could not apply the request and nothing changed; for health: the node does not reach a quorum"},
		{exitUnknownOutcome, []error{client.ErrUnknownOutcome}, "unknown outcome: the write may or may not have taken effect; read the key before retrying"},
		{exitUnavailable, []error{client.ErrUnavailable}, "no endpoint reachable"},
		{exitNotInteger, []error{client.ErrNotAnInteger, client.ErrOverflow}, "incr: the value is not a decimal integer, or the result would overflow int64"},
		{exitOverloaded, []error{client.ErrOverloaded}, "overloaded: the node refused the request at its bound of requests in flight; nothing changed, retry later"},
		{exitNoSpace, []error{client.ErrNoSpace}, "no space: a node's disk is nearly full or its store over quota; the write was refused and nothing changed (get and del still work)"},
		{exitLocked, []error{client.ErrLocked, client.ErrLockLost, client.ErrNotLockHolder}, "lock, elect: the wait for the lock ended with another holder, or the lock's lease was lost (lock then exits with this code after stopping the command)"},
	}
}

// exitCode maps a command's error to the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var usage *usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	var status *exitStatus
	if errors.As(err, &status) {
		return status.code
	}
	for _, row := range exitCodes() {
		for _, target := range row.errs {
			if errors.Is(err, target) {
				return row.code
			}
		}
	}
	return exitError
}

// exitCodeHelp renders the table for the root command's help.
func exitCodeHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, row := range exitCodes() {
		fmt.Fprintf(&b, "  %d  %s\n", row.code, row.meaning)
	}
	return b.String()
}

// exitStatus is a command's own exit status, passed on as the process's
// (caspaxos lock): not an error of this binary, so nothing is printed.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("the command exited with status %d", e.code) }

// usageError is a command line that cannot be run as written (exit code 2).
type usageError struct {
	cmd string // the command path, for the help hint
	err error
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v (see '%s --help')", e.err, e.cmd)
}

func (e *usageError) Unwrap() error { return e.err }

// usagef returns a *usageError for cmd.
func usagef(cmdPath, format string, args ...any) error {
	return &usageError{cmd: cmdPath, err: fmt.Errorf(format, args...)}
}

// opError is a failed client call. Its message is short and says what
// happened in the CLI's words; Unwrap keeps the client's error for exitCode.
type opError struct {
	op  string
	key string // empty for commands without a key
	err error
}

func (e *opError) Error() string {
	if e.key == "" {
		return e.op + ": " + describe(e.err)
	}
	return fmt.Sprintf("%s %q: %s", e.op, e.key, describe(e.err))
}

func (e *opError) Unwrap() error { return e.err }

// describe says in one phrase what a client error means.
func describe(err error) string {
	var vm *client.VersionMismatchError
	switch {
	case errors.As(err, &vm) && vm.Current == 0:
		return "version mismatch: the key does not exist"
	case errors.As(err, &vm):
		return fmt.Sprintf("version mismatch: the key's current version is %d", vm.Current)
	case errors.Is(err, client.ErrNotFound):
		return "key not found"
	case errors.Is(err, client.ErrLeaseNotFound):
		return "lease not found, expired or revoked"
	case errors.Is(err, client.ErrLockLost):
		return "the lock's lease was lost: " + detail(err, client.ErrLockLost)
	case errors.Is(err, client.ErrNotAnInteger):
		return "the value is not a decimal integer"
	case errors.Is(err, client.ErrOverflow):
		return "the result would overflow int64"
	case errors.Is(err, client.ErrNoQuorum):
		return "no quorum: the cluster could not apply the request; nothing changed"
	case errors.Is(err, client.ErrOverloaded):
		return "node overloaded: it refused the request and nothing changed; retry later"
	case errors.Is(err, client.ErrUnknownOutcome):
		return "outcome unknown: the write may or may not have taken effect; read the key before retrying"
	case errors.Is(err, client.ErrNoSpace):
		return "no space: " + detail(err, client.ErrNoSpace)
	case errors.Is(err, client.ErrUnavailable):
		return "no endpoint reachable (" + detail(err, client.ErrUnavailable) + ")"
	}
	return strings.TrimPrefix(err.Error(), "caspaxos/client: ")
}

// detail returns what err adds after the text of the sentinel it wraps.
func detail(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
