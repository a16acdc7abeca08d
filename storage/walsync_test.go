package storage

import (
	"testing"
	"time"
)

func TestSyncTimesBuckets(t *testing.T) {
	var h syncTimes
	for _, d := range []time.Duration{0, 32 * time.Microsecond, 33 * time.Microsecond, time.Millisecond, time.Hour} {
		h.observe(d)
	}
	count, total, buckets := h.load()
	want := [SyncBuckets]uint64{0: 2, 1: 1, 5: 1, SyncBuckets - 1: 1}
	if count != 5 || buckets != want || total != time.Hour+time.Millisecond+65*time.Microsecond {
		t.Fatalf("count %d total %v buckets %v, want 5, 1h1.065ms, %v", count, total, buckets, want)
	}
}

// TestStatsTimeWALSyncs: every Apply waits for a WAL sync, and each sync is
// counted and timed.
func TestStatsTimeWALSyncs(t *testing.T) {
	s, err := OpenPebble(t.TempDir(), PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.Stats()
	for i := range 3 {
		if err := s.Apply([]Entry{{Key: "k", Register: testRegister(uint64(i + 1))}}); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	syncs := st.WALSyncs - before.WALSyncs
	var bucketed uint64
	for i := range st.WALSyncTimes {
		bucketed += st.WALSyncTimes[i] - before.WALSyncTimes[i]
	}
	if syncs < 3 || bucketed != syncs || st.WALSyncTime <= before.WALSyncTime {
		t.Fatalf("3 Applys: %d syncs, %d in buckets, time %v -> %v", syncs, bucketed, before.WALSyncTime, st.WALSyncTime)
	}
}
