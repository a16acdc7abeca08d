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

// The names of every file in a data directory. The layout, with who writes
// each file and when, is drawn once, in the package documentation (doc.go).
const (
	lockFileName    = "LOCK"
	formatFileName  = "FORMAT"
	ballastFileName = "BALLAST"
	pebbleDirName   = "pebble"
	// tempSuffix names the temporary file of a replace (FORMAT.tmp,
	// MEMBERSHIP.tmp...): what a crash during a replace may leave behind,
	// overwritten by the next replace of that file.
	tempSuffix = ".tmp"
)

// StateFile names one of a node's state files: small files next to the
// store, replaced whole (Dir.WriteState). The package documentation says
// what each holds and who writes it.
type StateFile string

const (
	MembershipFile       StateFile = "MEMBERSHIP"
	MembershipChangeFile StateFile = "MEMBERSHIP-CHANGE"
	IdentityFile         StateFile = "IDENTITY"
	PeersFile            StateFile = "PEERS"
	WasMemberFile        StateFile = "WAS-MEMBER"
	RemovedFile          StateFile = "REMOVED"
	AuthSeenFile         StateFile = "AUTH-SEEN"
	// IncarnationFile is read only: releases before IDENTITY wrote it.
	IncarnationFile StateFile = "INCARNATION"
)

// headed reports whether f is written under the state-file header
// (statefile.go). WAS-MEMBER and REMOVED are not: WAS-MEMBER is read for
// its presence alone and REMOVED's content only appears in an error
// message, and both were written without a header by earlier releases,
// whose files must still read. INCARNATION is only ever read, as those
// releases wrote it.
func (f StateFile) headed() bool {
	switch f {
	case WasMemberFile, RemovedFile, IncarnationFile:
		return false
	}
	return true
}

const (
	formatVersion   = 1
	formatPrefix    = "caspaxos storage format "
	formatFileBytes = 256 // more than any FORMAT file this package writes
)

// Dir is a node's data directory: the store (OpenPebble) and the node's
// state files next to it. It is the one owner of the directory: every file
// in it is named here, and every access goes through vfs.FS, so that tests
// can crash the whole directory (vfs.NewCrashableMem) or fail its syncs
// (errorfs), state files included.
//
// A Dir holds no resources; its methods may be called concurrently, but two
// writes of the same state file must not run at once (each caller of
// WriteState serializes the writes of its own files).
type Dir struct {
	fs   vfs.FS
	path string
}

// NewDir returns the data directory path on fs; nil fs means the operating
// system's filesystem (vfs.Default). It touches nothing on disk: OpenPebble
// creates the directory.
func NewDir(fs vfs.FS, path string) *Dir {
	if fs == nil {
		fs = vfs.Default
	}
	return &Dir{fs: fs, path: path}
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

func (d *Dir) join(name string) string { return d.fs.PathJoin(d.path, name) }

// create creates the directory and any missing parent, and makes each new
// entry durable by syncing the directory that holds it.
func (d *Dir) create() error {
	var missing []string // dir, then its missing parents, upwards
	for p := d.path; ; p = d.fs.PathDir(p) {
		if _, err := d.fs.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
		missing = append(missing, p)
		if d.fs.PathDir(p) == p {
			break
		}
	}
	if err := d.fs.MkdirAll(d.path, 0o755); err != nil {
		return fmt.Errorf("caspaxos/storage: create data directory: %w", err)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(d.fs, d.fs.PathDir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: open directory %s to sync it: %w", dir, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("caspaxos/storage: sync directory %s: %w", dir, err)
	}
	return nil
}

// lock takes the directory's LOCK. On the operating system's filesystem it
// is a flock (lockFile: the one file call that cannot go through vfs.FS),
// which, unlike the fcntl lock vfs.Default.Lock takes, also excludes a
// second open by this process and is released by the kernel when the
// process dies. Other filesystems lock through vfs.FS.Lock.
func (d *Dir) lock() (io.Closer, error) {
	path := d.join(lockFileName)
	if d.fs == vfs.Default {
		return lockFile(path)
	}
	l, err := d.fs.Lock(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, path, err)
	}
	return l, nil
}

// replace replaces the file name with what write writes, so that after a
// crash at any moment the file holds either its old content (or is absent,
// if it was) or the whole new content, never a part of it: it writes
// name.tmp, fsyncs it, renames it over name and fsyncs the directory,
// which makes the rename durable. It is the one way this package writes a
// file whole (FORMAT, BALLAST, the state files).
//
// After an error the caller must not go on as if the write happened. If
// the temporary file could not be written or synced, the old content is
// still there and the temporary file is removed; if the directory's sync
// failed, the new content is in place but may not survive a crash.
func (d *Dir) replace(name string, write func(vfs.File) error) error {
	tmp, path := d.join(name+tempSuffix), d.join(name)
	f, err := d.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: create %s: %w", tmp, err)
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.fs.Rename(tmp, path)
	}
	if err != nil {
		_ = d.fs.Remove(tmp)
		return fmt.Errorf("caspaxos/storage: write %s: %w", path, err)
	}
	return syncDir(d.fs, d.path)
}

// writeBytes is a replace's write of content.
func writeBytes(content []byte) func(vfs.File) error {
	return func(f vfs.File) error {
		_, err := f.Write(content)
		return err
	}
}

// read returns up to limit bytes of the file name, nil if there is no such
// file. The content of a file that exists is never nil.
func (d *Dir) read(name string, limit int64) ([]byte, error) {
	path := d.join(name)
	f, err := d.fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("caspaxos/storage: open %s: %w", path, err)
	}
	defer f.Close()
	content, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("caspaxos/storage: read %s: %w", path, err)
	}
	if content == nil {
		content = []byte{}
	}
	return content, nil
}

// remove removes the file name durably; a missing file is no error.
func (d *Dir) remove(name string) error {
	path := d.join(name)
	if err := d.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("caspaxos/storage: remove %s: %w", path, err)
	}
	return syncDir(d.fs, d.path)
}

// checkFormat checks the directory's FORMAT file, or writes it in a new
// directory.
func (d *Dir) checkFormat() error {
	path := d.join(formatFileName)
	content, err := d.read(formatFileName, formatFileBytes)
	if err != nil {
		return err
	}
	if content == nil {
		return d.initFormat()
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
func (d *Dir) initFormat() error {
	names, err := d.fs.List(d.path)
	if err != nil {
		return fmt.Errorf("caspaxos/storage: list %s: %w", d.path, err)
	}
	for _, name := range names {
		if name != lockFileName && name != formatFileName+tempSuffix && name != "lost+found" {
			return fmt.Errorf("%w: %s holds %q but no %s file; this build writes format version %d only into an empty directory",
				ErrFormat, d.path, name, formatFileName, formatVersion)
		}
	}
	return d.replace(formatFileName, writeBytes([]byte(formatLine())))
}
