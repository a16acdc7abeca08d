//go:build unix

package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path, creating the file if needed.
// The lock belongs to the open file: a second lockFile of the same path
// fails even in the same process, and the kernel drops the lock when the
// file is closed or the process dies. Closing the returned io.Closer
// releases it.
func lockFile(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/storage: open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked", ErrLocked, path)
		}
		return nil, fmt.Errorf("caspaxos/storage: lock %s: %w", path, err)
	}
	return f, nil
}
