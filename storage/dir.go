package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The data directory's layout is drawn in the package documentation (doc.go).
const (
	formatFileName  = "FORMAT"
	formatTempName  = "FORMAT.tmp"
	lockFileName    = "LOCK"
	pebbleDirName   = "pebble"
	formatVersion   = 1
	formatPrefix    = "caspaxos storage format "
	formatFileBytes = 256 // more than any FORMAT file this package writes
)

// makeDir creates dir and any missing parent, and makes each new entry
// durable by syncing the directory that holds it.
func makeDir(fs vfs.FS, dir string) error {
	var missing []string // dir, then its missing parents, upwards
	for d := dir; ; d = fs.PathDir(d) {
		if _, err := fs.Stat(d); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if fs.PathDir(d) == d {
			break
		}
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("caspaxos/storage: create data directory: %w", err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(fs, fs.PathDir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory, making the entries created or renamed in it
// durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: open directory %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: sync directory %s: %w", dir, err)
	}
	return nil
}

// lockDir takes the data directory's LOCK. On the operating system's
// filesystem it is a flock (lockFile), which, unlike the fcntl lock Pebble
// takes, also excludes a second open by this process and is released by the
// kernel when the process dies. Other filesystems lock through vfs.FS.Lock.
func lockDir(fs vfs.FS, dir string) (io.Closer, error) {
	path := fs.PathJoin(dir, lockFileName)
	if fs == vfs.Default {
		return lockFile(path)
	}
	l, err := fs.Lock(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, path, err)
	}
	return l, nil
}

// checkFormat checks dir's FORMAT file, or writes it in a new directory.
func checkFormat(fs vfs.FS, dir string) error {
	path := fs.PathJoin(dir, formatFileName)
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return initFormat(fs, dir)
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: open %s: %w", path, err)
	}
	defer f.Close()
	content, err := io.ReadAll(io.LimitReader(f, formatFileBytes))
	if err != nil {
		return fmt.Errorf("caspaxos/storage: read %s: %w", path, err)
	}
	text := strings.TrimSuffix(string(content), "\n")
	digits, ok := strings.CutPrefix(text, formatPrefix)
	version, perr := strconv.ParseUint(digits, 10, 32)
	if !ok || perr != nil {
		return fmt.Errorf("%w: %s does not name a format version (it holds %q; this build reads %q)",
			ErrFormat, path, text, formatLine())
	}
	if version != formatVersion {
		return fmt.Errorf("%w: %s says format version %d; this build reads format version %d",
			ErrFormat, path, version, formatVersion)
	}
	return nil
}

// formatLine is the content of the FORMAT file this build writes.
func formatLine() string { return formatPrefix + strconv.Itoa(formatVersion) + "\n" }

// initFormat writes the FORMAT file of a new data directory. A directory
// that already holds anything else (a database, most likely) but no FORMAT
// file is refused: it was not made by this package, or lost its FORMAT file.
// Only our LOCK, a FORMAT.tmp left by a crash, and the lost+found of a
// filesystem's root directory may be there.
func initFormat(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: list %s: %w", dir, err)
	}
	for _, name := range names {
		if name != lockFileName && name != formatTempName && name != "lost+found" {
			return fmt.Errorf("%w: %s holds %q but no %s file; this build writes format version %d only into an empty directory",
				ErrFormat, dir, name, formatFileName, formatVersion)
		}
	}
	return writeFileAtomic(fs, dir, formatTempName, formatFileName, []byte(formatLine()))
}

// writeFileAtomic writes a file so that after a crash it is either absent or
// complete: write a temporary file, fsync it, rename it, fsync the directory.
func writeFileAtomic(fs vfs.FS, dir, tempName, name string, content []byte) error {
	tmp, path := fs.PathJoin(dir, tempName), fs.PathJoin(dir, name)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: create %s: %w", tmp, err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: write %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("caspaxos/storage: rename %s to %s: %w", tmp, path, err)
	}
	return syncDir(fs, dir)
}
