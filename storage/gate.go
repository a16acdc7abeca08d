package storage

import (
	"fmt"
	"sync"
)

// gate admits calls into a store and turns them away once the store is
// closed or stopped. Close waits at the gate until the calls inside have
// left, so the store's resources are never released under a running call.
//
// A call never holds the gate's mutex while it runs: a call that re-enters
// the store (Scan's fn calling Apply) while Close waits is turned away with
// ErrClosed instead of deadlocking.
type gate struct {
	mu      sync.Mutex
	active  int           // calls inside
	closed  bool          // Close has begun
	idle    chan struct{} // made by a waiter; closed when active falls to 0
	stopped error         // the fail-stop error, or nil
}

// enter admits a call, or returns why it may not run. A caller that got nil
// must call exit.
func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if g.stopped != nil {
		return g.stopped
	}
	g.active++
	return nil
}

// exit lets a call out.
func (g *gate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active < 0 {
		panic("caspaxos/storage: gate exit without enter")
	}
	if g.active == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close shuts the gate and waits for the calls inside to leave. It returns
// ErrClosed if the gate was already closed.
func (g *gate) close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.closed = true
	g.mu.Unlock()
	g.waitIdle()
	return nil
}

// waitIdle returns once no call is inside. Only a closed or stopped gate,
// which admits no new call, stays idle once it is.
func (g *gate) waitIdle() {
	g.mu.Lock()
	if g.active == 0 {
		g.mu.Unlock()
		return
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	<-idle
}

// isClosed reports whether Close has begun (a long Scan checks it).
func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// stop records the fail-stop: kind (ErrSyncFailed or ErrCorrupt) and its
// cause. Every later enter returns the error it makes, as does failure. It
// reports whether this was the first stop.
func (g *gate) stop(kind, cause error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped != nil {
		return false
	}
	g.stopped = &stoppedError{kind: kind, cause: cause}
	return true
}

// failure returns the fail-stop error, or nil while the store runs.
func (g *gate) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopped
}

// stoppedError is what every call returns once the store stopped: it
// matches its kind and ErrClosed, and wraps the cause.
type stoppedError struct{ kind, cause error }

func (e *stoppedError) Error() string {
	return fmt.Sprintf("%v: %v", e.kind, e.cause)
}

func (e *stoppedError) Unwrap() []error { return []error{e.kind, ErrClosed, e.cause} }
