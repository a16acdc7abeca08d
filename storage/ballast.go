package storage

import (
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultBallastBytes is the size of the ballast (PebbleOptions.BallastBytes).
const DefaultBallastBytes = 64 << 20

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
func (d *Dir) keepBallast(log *slog.Logger, size int64) {
	if size <= 0 {
		return
	}
	u, err := d.fs.GetDiskUsage(d.path)
	if err != nil {
		if !errors.Is(err, vfs.ErrUnsupported) {
			log.Warn("caspaxos/storage: cannot read the disk's free space; ballast left as it is", "dir", d.path, "err", err)
		}
		return
	}
	_, statErr := d.fs.Stat(d.join(ballastFileName))
	exists := statErr == nil
	switch {
	case exists && u.AvailBytes < uint64(size):
		if err := d.remove(ballastFileName); err != nil {
			log.Error("caspaxos/storage: disk nearly full and the ballast cannot be removed", "dir", d.path, "err", err)
			return
		}
		log.Warn("caspaxos/storage: disk nearly full: removed the ballast so that the store can open; free space, then restart to write it again",
			"dir", d.path, "free_bytes", u.AvailBytes, "ballast_bytes", size)
	case !exists && u.AvailBytes >= 2*uint64(size):
		if err := d.replace(ballastFileName, writeBallast(size)); err != nil {
			log.Warn("caspaxos/storage: cannot write the ballast", "dir", d.path, "err", err)
		}
	}
}

// writeBallast is a replace's write of a ballast of size bytes: allocated
// with fallocate where the filesystem has it, else written as zeros.
func writeBallast(size int64) func(vfs.File) error {
	return func(f vfs.File) error {
		if f.Preallocate(0, size) == nil {
			return nil
		}
		// No fallocate here (or not for this filesystem): write zeros.
		zeros := make([]byte, 1<<20)
		for left := size; left > 0; left -= int64(len(zeros)) {
			if _, err := f.Write(zeros[:min(int64(len(zeros)), left)]); err != nil {
				return err
			}
		}
		return nil
	}
}
