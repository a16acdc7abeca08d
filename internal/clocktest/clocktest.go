// Package clocktest helps tests show that code measures time on the
// monotonic clock: StepWall makes the readings time.Now gives once the
// system clock has been stepped, which a test cannot do to the real clock.
package clocktest

import (
	"testing"
	"time"
	"unsafe"
)

// StepWall returns tm, which must carry a monotonic reading (time.Now's
// do), with its wall clock reading moved by d (whole seconds) and its
// monotonic reading kept: what time.Now returns once an operator or NTP
// has stepped the system clock by d. Time spans between such readings
// (Sub, Since, Until, Before, After, Equal) are monotonic; what goes
// through the wall clock (UnixNano, Truncate, Round) sees the step.
//
// time.Time has no API for this, so StepWall rewrites the seconds of its
// wall field (1 bit "has monotonic", 33 bits of seconds since 1885, 30
// bits of nanoseconds) and checks the result through the API: if a Go
// release changes the layout, the check fails the test that called it.
func StepWall(tb testing.TB, tm time.Time, d time.Duration) time.Time {
	tb.Helper()
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const nsecBits, secMask = 30, 1<<33 - 1
	l := *(*layout)(unsafe.Pointer(&tm))
	if l.wall>>63 == 0 {
		tb.Fatal("clocktest.StepWall: the time has no monotonic reading")
	}
	sec := uint64(int64((l.wall>>nsecBits)&secMask) + int64(d/time.Second))
	l.wall = l.wall&^(secMask<<nsecBits) | (sec&secMask)<<nsecBits
	out := *(*time.Time)(unsafe.Pointer(&l))
	if out.Sub(tm) != 0 || !out.Round(0).Equal(tm.Round(0).Add(d.Truncate(time.Second))) {
		tb.Fatalf("clocktest.StepWall: time.Time's layout is not the one expected: %v from %v", out, tm)
	}
	return out
}
