package storage

import (
	"fmt"
	"log/slog"
)

// pebbleLogger carries Pebble's log lines to the store's *slog.Logger and
// turns Pebble's fatal errors into a fail-stop of the store.
//
// What Pebble does on a failed WAL fsync (v2.1, read from its source): the
// WAL writer's flush loop hands the error to every batch waiting on that
// sync and keeps it: every later sync fails with it too. DB.Apply then calls
// Logger.Fatalf("pebble: fatal commit error: ...") from the committing
// goroutine, the caller's own. Pebble's default logger exits the process
// there (os.Exit(1)). Pebble also calls Fatalf, from background
// goroutines, when a MANIFEST write or sync fails, and on internal
// invariant violations.
//
// Fatalf here does not exit and does not panic: it stops the store (every
// later call returns ErrSyncFailed) and returns. Pebble's code after each
// Fatalf call that this package can reach returns the error to its caller
// (or, for DB.Apply, returns nil), so Pebble goes on without serving
// anything: the store's gate turns every call away. Because Fatalf runs in
// the goroutine of the failing Apply before DB.Apply returns, that Apply sees
// the stop when DB.Apply returns and reports ErrSyncFailed, not success.
//
// Pebble makes a batch visible in its memtable before the fsync; the data
// of a failed sync is therefore in memory but never served, because the
// readers wait on pendingWrites and check the stop afterwards.
type pebbleLogger struct {
	log  *slog.Logger
	stop func(cause error)
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.stop(&pebbleFatalError{msg: fmt.Sprintf(format, args...), cause: firstError(args)})
}

// pebbleFatalError is a fatal error Pebble reported through Fatalf. It
// unwraps to the first error among Fatalf's arguments, so errors.Is sees
// the I/O error behind it.
type pebbleFatalError struct {
	msg   string
	cause error
}

func (e *pebbleFatalError) Error() string { return e.msg }
func (e *pebbleFatalError) Unwrap() error { return e.cause }

// firstError returns the first of args that is an error, or nil.
func firstError(args []any) error {
	for _, a := range args {
		if err, ok := a.(error); ok {
			return err
		}
	}
	return nil
}
