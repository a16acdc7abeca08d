package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultBallastBytes is the size of the ballast (PebbleOptions.BallastBytes).
const DefaultBallastBytes = 64 << 20

const (
	ballastFileName = "BALLAST"
	ballastTempName = "BALLAST.tmp"
)

// keepBallast runs before Pebble opens. Pebble cannot open on a full
// disk: it flushes what it replays from its write-ahead log before Open
// returns, and retries a flush that fails for lack of space forever. So
// the data directory holds a BALLAST file of size bytes, written while
// there is room; an open that finds less than size free deletes it, which
// gives Pebble the room to open (reads and deletes then work; the server
// refuses new writes until space is freed). An open with room again
// writes a new ballast.
//
// Errors writing the ballast are logged, not returned: the store works
// without it.
func (s *Pebble) keepBallast(fs vfs.FS, size int64) {
	if size <= 0 {
		return
	}
	path := fs.PathJoin(s.dir, ballastFileName)
	u, err := fs.GetDiskUsage(s.dir)
	if err != nil {
		if !errors.Is(err, vfs.ErrUnsupported) {
			s.log.Warn("caspaxos/storage: cannot read the disk's free space; ballast left as it is", "dir", s.dir, "err", err)
		}
		return
	}
	_, statErr := fs.Stat(path)
	exists := statErr == nil
	switch {
	case exists && u.AvailBytes < uint64(size):
		if err := fs.Remove(path); err != nil {
			s.log.Error("caspaxos/storage: disk nearly full and the ballast cannot be removed", "dir", s.dir, "err", err)
			return
		}
		_ = syncDir(fs, s.dir)
		s.log.Warn("caspaxos/storage: disk nearly full: removed the ballast so that the store can open; free space, then restart to write it again",
			"dir", s.dir, "free_bytes", u.AvailBytes, "ballast_bytes", size)
	case !exists && u.AvailBytes >= 2*uint64(size):
		if err := writeBallast(fs, s.dir, size); err != nil {
			s.log.Warn("caspaxos/storage: cannot write the ballast", "dir", s.dir, "err", err)
		}
	}
}

// writeBallast writes dir/BALLAST of size bytes (allocated with fallocate
// where the filesystem has it, else written as zeros): a temporary file,
// fsync, rename, fsync of dir.
func writeBallast(fs vfs.FS, dir string, size int64) error {
	tmp, path := fs.PathJoin(dir, ballastTempName), fs.PathJoin(dir, ballastFileName)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: create %s: %w", tmp, err)
	}
	if f.Preallocate(0, size) != nil {
		// No fallocate here (or not for this filesystem): write zeros.
		zeros := make([]byte, 1<<20)
		for left := size; left > 0 && err == nil; left -= int64(len(zeros)) {
			_, err = f.Write(zeros[:min(int64(len(zeros)), left)])
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return fmt.Errorf("caspaxos/storage: write %s: %w", path, err)
	}
	return syncDir(fs, dir)
}
