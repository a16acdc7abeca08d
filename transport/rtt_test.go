package transport

import (
	"testing"
	"time"
)

// A link measures its round-trip time once it is up, and the window keeps
// the smallest of its last samples.
func TestRTT(t *testing.T) {
	c := newCluster(t, 2)
	if _, ok := c.tr[1].RTT(3); ok {
		t.Fatal("RTT of a node that is no peer")
	}
	waitFor(t, "an RTT sample", func() bool { _, ok := c.tr[1].RTT(2); return ok })
	if d, _ := c.tr[1].RTT(2); d <= 0 || d > probeTimeout {
		t.Fatalf("RTT on loopback %v", d)
	}
}

func TestRTTWindow(t *testing.T) {
	var w rttWindow
	if _, ok := w.min(); ok {
		t.Fatal("min of an empty window")
	}
	w.add(5 * time.Millisecond)
	w.add(3 * time.Millisecond)
	if d, _ := w.min(); d != 3*time.Millisecond {
		t.Fatalf("min %v, want 3ms", d)
	}
	for range rttSamples {
		w.add(7 * time.Millisecond)
	}
	if d, _ := w.min(); d != 7*time.Millisecond {
		t.Fatalf("min after the window moved on: %v, want 7ms", d)
	}
}

// After a failure the window reports the peer far until it answered
// rttSettle probes in a row, and forgets the samples from before.
func TestRTTWindowFailure(t *testing.T) {
	var w rttWindow
	w.add(time.Millisecond)
	w.fail()
	for i := range rttSettle {
		if d, ok := w.min(); !ok || d != probeTimeout {
			t.Fatalf("after a failure and %d answers: %v %v, want %v", i, d, ok, probeTimeout)
		}
		w.add(2 * time.Millisecond)
	}
	if d, ok := w.min(); !ok || d != 2*time.Millisecond {
		t.Fatalf("settled: %v %v, want 2ms", d, ok)
	}
}
