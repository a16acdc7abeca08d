package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	crerrors "github.com/cockroachdb/errors"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleFormatMajorVersion is the Pebble format major version of data
// directories of format version 1 (see the package documentation). It is
// pinned, not "newest", so that upgrading the library never ratchets a
// directory past what an older build of caspaxos reads.
const pebbleFormatMajorVersion = pebble.FormatValueSeparation

// PebbleOptions configures OpenPebble. The zero value is ready to use.
type PebbleOptions struct {
	// FS is the filesystem the store lives on. Nil means the operating
	// system's (vfs.Default). Tests pass vfs.NewCrashableMem() to simulate
	// crashes, or a filesystem that fails on demand.
	FS vfs.FS
	// Logger receives the one line the store logs when it stops (Error),
	// Pebble's background errors (Error), slow disk operations (Warn) and
	// Pebble's informational messages (Debug). Nil discards them.
	Logger *slog.Logger
	// BallastBytes is the size of the BALLAST file kept in the data
	// directory so that the store can open on a full disk (see
	// keepBallast; default DefaultBallastBytes, negative: none).
	BallastBytes int64
}

// PebbleStats counts a Pebble store's writes since it was opened, for
// metrics. Applies/WALSyncs is the mean number of Applys sharing one sync
// (group commit).
type PebbleStats struct {
	// Applies is the number of Apply calls that wrote entries durably
	// (ApplyUnsynced is not counted).
	Applies uint64
	// Entries is the number of registers those Applys wrote.
	Entries uint64
	// WALSyncs is the number of fsyncs of Pebble's write-ahead log, for
	// every kind of write (Apply, Remove, SetCeiling) and for log rotations.
	WALSyncs uint64
	// WALSyncTime is how long they took in all, and WALSyncTimes[i] how
	// many took at most SyncBucketBound(i) and more than the bound below
	// (not cumulative).
	WALSyncTime  time.Duration
	WALSyncTimes [SyncBuckets]uint64
}

// Pebble is the durable Store, on github.com/cockroachdb/pebble.
//
// Concurrency: Apply, Get, Scan, Ceiling and SetCeiling run in parallel
// (SetCeilings one at a time: each reads the stored one and keeps the higher);
// concurrent Applys share fsyncs through Pebble's commit pipeline. Remove
// reads, compares and deletes under writeMu held exclusively, while every
// Apply holds it shared: a Remove waits for the Applys in flight and holds
// off new ones for one fsync. Remove is rare (deletion GC), so a mutex is
// simpler than making the read part of an indexed batch and re-checking it.
type Pebble struct {
	dir          *Dir
	ballastBytes int64
	log          *slog.Logger
	lock         io.Closer
	db           *pebble.DB

	gate    gate
	writeMu sync.RWMutex // Apply: shared; Remove: exclusive
	ceilMu  sync.Mutex   // SetCeiling's read, compare and write
	pending pendingWrites

	opened  atomic.Bool // db is set: a stop may release it (see stop)
	dbClose sync.Once
	dbErr   error // what db.Close returned

	applies, entries atomic.Uint64
	walSyncs         syncTimes

	// attachedSeen: the attached index may have an entry (indexAttached).
	attachedSeen atomic.Bool
}

var _ Store = (*Pebble)(nil)

// OpenPebble opens the store in dir, creating dir if needed. It fails with
// ErrLocked if another store holds dir (in this process or another), with
// ErrFormat if dir was written in an unknown format, and with ErrCorrupt if
// Pebble finds its files damaged.
func OpenPebble(dir string, opts PebbleOptions) (*Pebble, error) {
	d := NewDir(opts.FS, dir)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := d.create(); err != nil {
		return nil, err
	}
	lock, err := d.lock()
	if err != nil {
		return nil, err
	}
	s := &Pebble{dir: d, log: log, lock: lock}
	s.ballastBytes = opts.BallastBytes
	if s.ballastBytes == 0 {
		s.ballastBytes = DefaultBallastBytes
	}
	if s.db, err = s.openDB(); err != nil {
		return nil, errors.Join(err, lock.Close())
	}
	s.opened.Store(true)
	if err := s.gate.failure(); err != nil {
		// Pebble failed between Open and now: no call was served.
		return nil, errors.Join(err, s.closeDB(), lock.Close())
	}
	if err := s.loadAttachedSeen(); err != nil {
		return nil, errors.Join(err, s.closeDB(), lock.Close())
	}
	return s, nil
}

// Dir returns the data directory the store lives in, for the node's state
// files next to it. The store holds the directory's LOCK while it is open.
func (s *Pebble) Dir() *Dir { return s.dir }

// openDB checks the format and opens Pebble in dir/pebble.
func (s *Pebble) openDB() (*pebble.DB, error) {
	if err := s.dir.checkFormat(); err != nil {
		return nil, err
	}
	s.dir.keepBallast(s.log, s.ballastBytes)
	fs, path := s.dir.fs, s.dir.join(pebbleDirName)
	if err := fs.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("caspaxos/storage: create %s: %w", path, err)
	}
	if err := syncDir(fs, s.dir.path); err != nil {
		return nil, err
	}
	// Memtable, WAL and compaction options stay at Pebble's defaults: none
	// of them shortens the WAL fsync every Apply waits for, and the larger
	// memtables tried were not faster (README.md in this folder).
	db, err := pebble.Open(path, &pebble.Options{
		FS:                 walSyncCounter{FS: fs, syncs: &s.walSyncs},
		FormatMajorVersion: pebbleFormatMajorVersion,
		Logger:             pebbleLogger{log: s.log, stop: func(err error) { s.stop(ErrSyncFailed, err) }},
		EventListener:      s.eventListener(),
	})
	if err != nil {
		if isPebbleCorruption(err) {
			return nil, fmt.Errorf("%w: open pebble in %s: %w", ErrCorrupt, path, err)
		}
		return nil, fmt.Errorf("caspaxos/storage: open pebble in %s: %w", path, err)
	}
	// Start a new WAL: see rotateWAL.
	if err := db.Flush(); err != nil {
		return nil, errors.Join(fmt.Errorf("caspaxos/storage: rotate the WAL of %s: %w", path, err), db.Close())
	}
	if err := s.gate.failure(); err != nil {
		// Pebble called Fatalf during Open but returned no error.
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// isPebbleCorruption reports whether Pebble marked err as corruption. Pebble
// marks errors with github.com/cockroachdb/errors, whose marks the standard
// errors.Is does not see.
func isPebbleCorruption(err error) bool {
	return crerrors.Is(err, pebble.ErrCorruption)
}

// eventListener logs Pebble's background errors and slow disk operations,
// and stops the store if Pebble finds a damaged file.
func (s *Pebble) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			level := slog.LevelError
			if s.gate.failure() != nil {
				level = slog.LevelDebug // the stop was logged; Pebble may retry until released
			}
			s.log.Log(context.Background(), level, "caspaxos/storage: pebble background error", "dir", s.dir.path, "err", err)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			s.stop(ErrCorrupt, fmt.Errorf("pebble found %s damaged: %w", info.Path, info.Details))
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			s.log.Warn("caspaxos/storage: slow disk", "dir", s.dir.path, "path", info.Path,
				"op", info.OpType.String(), "duration", info.Duration)
		},
	}
}

// stop makes the store fail-stop (PROTOCOL.md §10) and logs it once.
// kind is ErrSyncFailed or ErrCorrupt.
//
// It then closes Pebble in the background as soon as the calls in progress
// have left: after a failed MANIFEST sync Pebble retries the flush that
// failed at once and forever (it has no backoff), burning a core until
// it is closed. The LOCK stays held until Close.
func (s *Pebble) stop(kind, cause error) {
	if !s.gate.stop(kind, cause) {
		return
	}
	s.log.Error("caspaxos/storage: store stopped: every further call fails; restart the node",
		"dir", s.dir.path, "err", kind.Error()+": "+cause.Error())
	if s.opened.Load() {
		go func() {
			s.gate.waitIdle()
			s.closeDB()
		}()
	}
}

// closeDB closes Pebble once, for Close or after a stop.
func (s *Pebble) closeDB() error {
	s.dbClose.Do(func() { s.dbErr = s.db.Close() })
	return s.dbErr
}

// Stats returns the store's counters.
func (s *Pebble) Stats() PebbleStats {
	syncs, took, buckets := s.walSyncs.load()
	return PebbleStats{
		Applies:      s.applies.Load(),
		Entries:      s.entries.Load(),
		WALSyncs:     syncs,
		WALSyncTime:  took,
		WALSyncTimes: buckets,
	}
}

// Close implements Store. Closing a stopped store releases it too; the
// error Pebble then reports is returned.
func (s *Pebble) Close() error {
	if err := s.gate.close(); err != nil {
		return err
	}
	var err error
	if cerr := s.closeDB(); cerr != nil {
		err = fmt.Errorf("caspaxos/storage: close pebble in %s: %w", s.dir.path, cerr)
	}
	if lerr := s.lock.Close(); lerr != nil {
		err = errors.Join(err, fmt.Errorf("caspaxos/storage: release lock of %s: %w", s.dir.path, lerr))
	}
	return err
}
