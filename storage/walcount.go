package storage

import (
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walSyncCounter wraps the filesystem Pebble uses and counts the fsyncs of
// its write-ahead log files (names ending in ".log"), for PebbleStats.
// Pebble opens a WAL with Create or, when it recycles an old one,
// ReuseForWrite, and syncs it with Sync or SyncData; every other call goes
// straight to the wrapped filesystem.
type walSyncCounter struct {
	vfs.FS
	syncs *atomic.Uint64
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

// countedFile counts its syncs.
type countedFile struct {
	vfs.File
	syncs *atomic.Uint64
}

func (f countedFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

func (f countedFile) SyncData() error {
	f.syncs.Add(1)
	return f.File.SyncData()
}
