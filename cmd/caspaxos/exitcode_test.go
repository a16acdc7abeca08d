package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/client"
)

func TestExitCode(t *testing.T) {
	mismatch := &client.VersionMismatchError{Current: 7, Message: "expected 3"}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"other", errors.New("boom"), 1},
		{"too large", fmt.Errorf("%w: 2 MiB", client.ErrTooLarge), 1},
		{"bad request", fmt.Errorf("%w: empty key", client.ErrBadRequest), 1},
		{"usage", usagef("caspaxos get", "accepts 1 arg(s), received 0"), 2},
		{"not found", fmt.Errorf("%w: caspaxos: key not found", client.ErrNotFound), 3},
		{"version mismatch", mismatch, 4},
		{"version mismatch sentinel", client.ErrVersionMismatch, 4},
		{"no quorum", fmt.Errorf("%w: timeout", client.ErrNoQuorum), 5},
		{"unhealthy", fmt.Errorf("%w: reaches 1 of 3", errUnhealthy), 5},
		{"unknown outcome", fmt.Errorf("%w: connection reset", client.ErrUnknownOutcome), 6},
		{"unavailable", fmt.Errorf("%w: endpoint down", client.ErrUnavailable), 7},
		{"not an integer", fmt.Errorf("%w: \"abc\"", client.ErrNotAnInteger), 8},
		{"overflow", fmt.Errorf("%w: 1 + max", client.ErrOverflow), 8},
		{"overloaded", fmt.Errorf("%w: 8192 in flight", client.ErrOverloaded), 9},
		{"no space", fmt.Errorf("%w: 10 MiB free", client.ErrNoSpace), 10},
		{"locked", fmt.Errorf("%w: held by lease 2a", client.ErrLocked), 11},
		{"lock lost", fmt.Errorf("%w: lease 2a", client.ErrLockLost), 11},
		{"a command's status", &exitStatus{code: 42}, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
			// Commands wrap client errors in an *opError; the code must survive.
			if tt.err != nil {
				wrapped := fmt.Errorf("outer: %w", &opError{op: "get", key: "k", err: tt.err})
				if got := exitCode(wrapped); got != tt.want {
					t.Errorf("exitCode(wrapped %v) = %d, want %d", tt.err, got, tt.want)
				}
			}
		})
	}
}

// Every code of the table is in the root help, and every row's errors map to it.
func TestExitCodeTableIsConsistent(t *testing.T) {
	help := exitCodeHelp()
	seen := map[int]bool{}
	for _, row := range exitCodes() {
		if seen[row.code] {
			t.Errorf("code %d listed twice", row.code)
		}
		seen[row.code] = true
		if !strings.Contains(help, fmt.Sprintf("  %d  %s\n", row.code, row.meaning)) {
			t.Errorf("help lacks code %d", row.code)
		}
		for _, err := range row.errs {
			if got := exitCode(err); got != row.code {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, row.code)
			}
		}
	}
	for code := 0; code <= 8; code++ {
		if !seen[code] {
			t.Errorf("code %d missing from the table", code)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&opError{op: "get", key: "k", err: fmt.Errorf("%w: caspaxos: key not found", client.ErrNotFound)}, `get "k": key not found`},
		{&opError{op: "cas", key: "k", err: &client.VersionMismatchError{Current: 7}}, `cas "k": version mismatch: the key's current version is 7`},
		{&opError{op: "del", key: "k", err: &client.VersionMismatchError{}}, `del "k": version mismatch: the key does not exist`},
		{&opError{op: "members", err: fmt.Errorf("%w: endpoint 127.0.0.1:1 not connected", client.ErrUnavailable)}, `members: no endpoint reachable (endpoint 127.0.0.1:1 not connected)`},
		{&opError{op: "put", key: "k", err: fmt.Errorf("%w: caspaxos: value too large", client.ErrTooLarge)}, `put "k": key or value too large: caspaxos: value too large`},
		{usagef("caspaxos incr", "DELTA %q is not an integer", "x"), `DELTA "x" is not an integer (see 'caspaxos incr --help')`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("message %q, want %q", got, tt.want)
		}
	}
	if got := oneLine("first\nsecond\r\nthird  x\n"); got != "first second third  x" {
		t.Errorf("oneLine: %q", got)
	}
}
