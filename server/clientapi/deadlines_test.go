package clientapi

import (
	"context"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/clocktest"
)

func TestSharedDeadlines(t *testing.T) {
	var d deadlines
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	a := d.context(parent, time.Second)
	b := d.context(parent, time.Second)
	at, _ := a.Deadline()
	bt, _ := b.Deadline()
	if at.Equal(bt) != (a == b) {
		t.Fatalf("deadlines %v and %v, shared: %v", at, bt, a == b)
	}
	if at.After(start.Add(time.Second)) || at.Before(start.Add(time.Second-deadlineGrain)) {
		t.Fatalf("deadline %v after the start, want within a grain below 1s", at.Sub(start))
	}
	long := d.context(parent, time.Hour)
	if lt, _ := long.Deadline(); !lt.After(at) || long == a {
		t.Fatal("a later deadline shared an earlier context")
	}
	short := d.context(parent, 20*time.Millisecond)
	select {
	case <-short.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a 20ms context did not end")
	}
	if a.Err() != nil || long.Err() != nil {
		t.Fatal("a short deadline ended the others")
	}
	d.context(parent, time.Second) // short's deadline has passed: this drops it
	d.mu.Lock()
	for _, c := range d.ctxs {
		if c.ctx == short {
			t.Error("an ended context was kept")
		}
	}
	for i := 1; i < len(d.ctxs); i++ {
		if d.ctxs[i].at.Before(d.ctxs[i-1].at) {
			t.Errorf("contexts out of order: %v", d.ctxs)
		}
	}
	d.mu.Unlock()
	d.close()
	if a.Err() == nil || long.Err() == nil {
		t.Fatal("close left contexts running")
	}
}

// A stream's deadlines run on the monotonic clock: a step of the system
// clock by minutes neither ends the contexts handed out before it nor
// hands out one that has ended already.
func TestSharedDeadlinesIgnoreWallClockSteps(t *testing.T) {
	for _, step := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(step.String(), func(t *testing.T) {
			base := time.Now()
			var wallStep time.Duration
			d := deadlines{now: func() time.Time { return clocktest.StepWall(t, base, wallStep) }}
			defer d.close()
			parent := context.Background()
			before := d.context(parent, time.Minute)
			wallStep = step
			after := d.context(parent, time.Minute)
			if before.Err() != nil || after.Err() != nil {
				t.Fatalf("wall clock stepped by %v: contexts of a minute ended at once: before the step %v, after it %v", step, before.Err(), after.Err())
			}
			if at, _ := after.Deadline(); time.Until(at) < 50*time.Second {
				t.Fatalf("wall clock stepped by %v: a minute's deadline is %v away", step, time.Until(at))
			}
		})
	}
}
