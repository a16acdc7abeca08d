package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// crashFiles are the state files the crash tests write: one under a
// header, one without.
var crashFiles = []StateFile{MembershipFile, WasMemberFile}

// crashBody is the i-th content a crash test writes: long enough, now and
// then, to span several of the 4 KiB blocks a crash keeps or drops one by
// one (vfs.CrashCloneCfg).
func crashBody(i int, rng *rand.Rand) []byte {
	return fmt.Appendf(nil, `{"write":%d,"pad":%q}`, i, strings.Repeat("x", rng.IntN(3)*rng.IntN(5000)))
}

// crashClone returns what a crash of fs at this moment may leave: only what
// was synced, or that and some or all of what was not.
func crashClone(fs *vfs.MemFS, rng *rand.Rand) *vfs.MemFS {
	cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(3) * 50} // 0, 50 or 100
	if cfg.UnsyncedDataPercent > 0 {
		cfg.RNG = rand.New(rand.NewPCG(rng.Uint64(), 1))
	}
	return fs.CrashClone(cfg)
}

// checkState checks that state file f of the data directory on fs reads
// as one of want (nil: absent), whole: never a part, a mix or an error.
func checkState(t *testing.T, fs vfs.FS, f StateFile, want ...[]byte) {
	t.Helper()
	got, err := NewDir(fs, "/data").ReadState(f)
	if err != nil {
		t.Fatalf("%s after a crash: %v", f, err)
	}
	for _, w := range want {
		if (got == nil) == (w == nil) && bytes.Equal(got, w) {
			return
		}
	}
	t.Fatalf("%s after a crash holds %.80q (%d bytes), want one of %d contents written", f, got, len(got), len(want))
}

// TestStateFileCrash crashes the data directory before every filesystem
// operation of every write and removal of a state file, and after each
// returned: a crash during one leaves the file's old content or its new
// one, never a torn, empty or missing file; once it returned, the new one;
// the other state files keep theirs; and the crashed directory takes the
// next write.
func TestStateFileCrash(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			mem := vfs.NewCrashableMem()
			if err := NewDir(mem, "/data").create(); err != nil {
				t.Fatal(err)
			}
			// Armed, every operation on the directory first takes a crash
			// clone: a crash just before that step of the write.
			var armed atomic.Bool
			var during []*vfs.MemFS
			dir := NewDir(errorfs.Wrap(mem, errorfs.InjectorFunc(func(errorfs.Op) error {
				if armed.Load() {
					during = append(during, crashClone(mem, rng))
				}
				return nil
			})), "/data")
			acked := map[StateFile][]byte{} // nil: absent
			for i := range 30 {
				f := crashFiles[rng.IntN(len(crashFiles))]
				old, next := acked[f], []byte(nil)
				during = during[:0]
				armed.Store(true)
				var err error
				if acked[f] != nil && rng.IntN(4) == 0 {
					err = dir.RemoveState(f)
				} else {
					next = crashBody(i, rng)
					err = dir.WriteState(f, next)
				}
				armed.Store(false)
				if err != nil {
					t.Fatalf("write %d of %s: %v", i, f, err)
				}
				acked[f] = next
				if len(during) < 3 {
					t.Fatalf("write %d of %s crashed at %d points; the injector did not see it", i, f, len(during))
				}
				for _, crashed := range during {
					checkState(t, crashed, f, old, next)
					for _, other := range crashFiles {
						if other != f {
							checkState(t, crashed, other, acked[other])
						}
					}
				}
				checkState(t, crashClone(mem, rng), f, next)

				// The directory a crash left takes the next write: a
				// leftover temporary file is no obstacle.
				crashed := NewDir(during[rng.IntN(len(during))], "/data")
				if err := crashed.WriteState(f, []byte(`{"after":"crash"}`)); err != nil {
					t.Fatalf("write after a crash during write %d: %v", i, err)
				}
				checkState(t, crashed.fs, f, []byte(`{"after":"crash"}`))
			}
		})
	}
}

// TestStateFileSyncFailure: a write whose fsync fails returns the error.
// If the temporary file's fsync failed, the old content stays, also across
// a crash; if the directory's did, the file reads whole, old or new.
func TestStateFileSyncFailure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		path    string // whose sync fails
		keepOld bool
	}{
		{"temporary file", "/data/MEMBERSHIP.tmp", true},
		{"directory", "/data", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			var armed atomic.Bool
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && op.Kind == errorfs.OpFileSync && op.Path == tc.path {
					return errInjected
				}
				return nil
			}))
			dir := NewDir(fs, "/data")
			if err := dir.create(); err != nil {
				t.Fatal(err)
			}
			old, next := []byte(`{"v":1}`), []byte(`{"v":2}`)
			if err := dir.WriteState(MembershipFile, old); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			err := dir.WriteState(MembershipFile, next)
			armed.Store(false)
			if !errors.Is(err, errInjected) {
				t.Fatalf("write with a failing sync of %s: %v, want the injected error", tc.path, err)
			}
			want := [][]byte{old}
			if !tc.keepOld {
				want = append(want, next)
			}
			checkState(t, mem, MembershipFile, want...)
			checkState(t, mem.CrashClone(vfs.CrashCloneCfg{}), MembershipFile, want...)
			if tc.keepOld {
				if _, err := mem.Stat("/data/MEMBERSHIP.tmp"); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the temporary file of the failed write is left: %v", err)
				}
			}
		})
	}
}
