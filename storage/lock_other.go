//go:build !unix

package storage

import (
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// lockFile locks path through Pebble's lock for the operating system's
// filesystem where flock is not available.
func lockFile(path string) (io.Closer, error) {
	l, err := vfs.Default.Lock(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, path, err)
	}
	return l, nil
}
