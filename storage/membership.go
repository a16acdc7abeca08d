package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Small state files next to the store in its data directory (membership
// change's state: the membership a node uses, a controller's progress, a
// joining node's incarnation). They are not registers: they live outside
// Pebble, as whole files replaced atomically.

// WriteFileAtomic replaces dir/name with data durably: it writes a
// temporary file, syncs it, renames it over the old one and syncs the
// directory, so that after a crash either the old or the new content is
// found, never a mix. A failed sync is returned; the caller must not go on
// as if the write happened.
func WriteFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(vfs.Default, dir)
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: writing %s: %w", name, err)
	}
	return nil
}

// RemoveFile removes dir/name durably; a missing file is no error.
func RemoveFile(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("caspaxos/storage: removing %s: %w", name, err)
	}
	return syncDir(vfs.Default, dir)
}

// ReadFile returns the content of dir/name, nil if there is no such file.
func ReadFile(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("caspaxos/storage: reading %s: %w", name, err)
	}
	return b, nil
}
