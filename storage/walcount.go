package storage

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walSyncCounter wraps the filesystem Pebble uses and counts and times the
// fsyncs of its write-ahead log files (names ending in ".log"), for
// PebbleStats.
// Pebble opens a WAL with Create or, when it recycles an old one,
// ReuseForWrite, and syncs it with Sync or SyncData; every other call goes
// straight to the wrapped filesystem.
type walSyncCounter struct {
	vfs.FS
	syncs *syncTimes
}

func (fs walSyncCounter) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs walSyncCounter) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

func (fs walSyncCounter) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return countedFile{File: f, syncs: fs.syncs}, nil
}

// countedFile counts and times its syncs.
type countedFile struct {
	vfs.File
	syncs *syncTimes
}

func (f countedFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.syncs.observe(time.Since(start))
	return err
}

func (f countedFile) SyncData() error {
	start := time.Now()
	err := f.File.SyncData()
	f.syncs.observe(time.Since(start))
	return err
}

// SyncBuckets is the number of buckets of PebbleStats.WALSyncTimes.
const SyncBuckets = 16

// SyncBucketBound returns the upper bound of bucket i of
// PebbleStats.WALSyncTimes: 32µs doubled i times (the last is unbounded).
func SyncBucketBound(i int) time.Duration { return 32 * time.Microsecond << i }

// syncTimes is a histogram of WAL sync durations, safe for concurrent use.
type syncTimes struct {
	count   atomic.Uint64
	nanos   atomic.Uint64
	buckets [SyncBuckets]atomic.Uint64
}

func (h *syncTimes) observe(d time.Duration) {
	h.count.Add(1)
	h.nanos.Add(uint64(max(d, 0)))
	i := 0
	for i < SyncBuckets-1 && d > SyncBucketBound(i) {
		i++
	}
	h.buckets[i].Add(1)
}

func (h *syncTimes) load() (count uint64, total time.Duration, buckets [SyncBuckets]uint64) {
	for i := range h.buckets {
		buckets[i] = h.buckets[i].Load()
	}
	return h.count.Load(), time.Duration(h.nanos.Load()), buckets
}
