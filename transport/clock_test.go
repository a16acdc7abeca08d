package transport

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/clocktest"
)

// Peer liveness runs on the monotonic clock: a step of the system clock
// by minutes, forwards or backwards, neither makes a peer heard just now
// look dead nor keeps a silent one alive.
func TestLivenessIgnoresWallClockSteps(t *testing.T) {
	deadAfter := DefaultConfig().DeadAfter
	for _, step := range []time.Duration{10 * time.Minute, -10 * time.Minute, 0} {
		t.Run(step.String(), func(t *testing.T) {
			base := time.Now()
			var elapsed, wallStep time.Duration // the fake clock: monotonic time, and the wall clock's step
			tr := &Transport{cfg: Config{DeadAfter: deadAfter}, now: func() time.Time {
				return clocktest.StepWall(t, base.Add(elapsed), wallStep)
			}}
			tr.started = tr.now()
			var heard atomic.Int64
			if !tr.quiet(&heard) {
				t.Fatal("a peer never heard from is not quiet")
			}
			elapsed = time.Second
			tr.markHeard(&heard)
			wallStep = step // the system clock is stepped just after the peer was heard
			for _, c := range []struct {
				after time.Duration
				quiet bool
			}{
				{0, false},
				{deadAfter - time.Millisecond, false},
				{deadAfter, true},
				{time.Minute, true},
			} {
				elapsed = time.Second + c.after
				if got := tr.quiet(&heard); got != c.quiet {
					t.Errorf("%v after the last frame, wall clock stepped by %v: quiet = %v, want %v", c.after, step, got, c.quiet)
				}
			}
		})
	}
}
