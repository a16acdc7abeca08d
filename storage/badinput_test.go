package storage

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
)

func mustOpen(t *testing.T, dir string, fs vfs.FS) *Pebble {
	t.Helper()
	s, err := OpenPebble(dir, PebbleOptions{FS: fs})
	if err != nil {
		t.Fatalf("OpenPebble(%s): %v", dir, err)
	}
	return s
}

func mustClose(t *testing.T, s Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// editRaw changes the record under pebbleKey with Pebble itself, behind
// the store's back.
func editRaw(t *testing.T, fs vfs.FS, dir string, pebbleKey []byte, edit func([]byte) []byte) {
	t.Helper()
	quiet := pebbleLogger{log: slog.New(slog.DiscardHandler), stop: func(err error) { t.Errorf("pebble: %v", err) }}
	db, err := pebble.Open(fs.PathJoin(dir, pebbleDirName), &pebble.Options{FS: fs, FormatMajorVersion: pebbleFormatMajorVersion, Logger: quiet})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	defer db.Close()
	val, closer, err := db.Get(pebbleKey)
	if err != nil {
		t.Fatalf("pebble Get(%q): %v", pebbleKey, err)
	}
	rec := edit(append([]byte(nil), val...))
	closer.Close()
	if err := db.Set(pebbleKey, rec, pebble.Sync); err != nil {
		t.Fatalf("pebble Set: %v", err)
	}
}

func TestCorruptRecordInStore(t *testing.T) {
	tests := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"bit flip in value", func(r []byte) []byte { r[len(r)-1] ^= 0x10; return r }},
		{"bit flip in ballot", func(r []byte) []byte { r[headerBytes+3] ^= 0x01; return r }},
		{"truncated", func(r []byte) []byte { return r[:len(r)-3] }},
		{"empty", func(r []byte) []byte { return nil }},
		{"unknown version", func(r []byte) []byte { r[4] = 9; return r }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := mustOpen(t, "/data", fs)
			for _, k := range []string{"k1", "k2", "k3"} {
				if err := s.Apply([]Entry{{Key: k, Register: testRegister(1)}}); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			if err := s.SetCeiling(7); err != nil {
				t.Fatalf("SetCeiling: %v", err)
			}
			mustClose(t, s)
			editRaw(t, fs, "/data", registerKey("k2"), tc.edit)
			editRaw(t, fs, "/data", []byte(ceilingKey), tc.edit)

			s = mustOpen(t, "/data", fs)
			defer mustClose(t, s)
			if _, err := s.Get("k1"); err != nil {
				t.Fatalf("Get of an intact record: %v", err)
			}
			reg, err := s.Get("k2")
			wantCorrupt(t, "Get", err, `register "k2"`)
			if !reg.Equal(protocol.Register{}) {
				t.Fatalf("Get of a corrupt record returned data: %+v", reg)
			}
			var seen []string
			err = s.Scan("", func(k string, _ protocol.Register) bool { seen = append(seen, k); return true })
			wantCorrupt(t, "Scan", err, `register "k2"`)
			if strings.Join(seen, ",") != "k1" {
				t.Fatalf("Scan gave %q before the corrupt record, want k1 only", seen)
			}
			_, err = s.Ceiling()
			wantCorrupt(t, "Ceiling", err, "ceiling")
		})
	}
}

// writeFormat replaces dir's FORMAT file.
func writeFormat(t *testing.T, fs vfs.FS, dir, content string) {
	t.Helper()
	if err := NewDir(fs, dir).replace(formatFileName, writeBytes([]byte(content))); err != nil {
		t.Fatal(err)
	}
}

func TestFormatFile(t *testing.T) {
	tests := []struct {
		name   string
		format string   // FORMAT content after a first open; "-" removes it
		want   []string // in the error, besides ErrFormat
	}{
		{"newer version", "caspaxos storage format 2\n", []string{"/data/FORMAT", "format version 2", "format version 1"}},
		{"version 0", "caspaxos storage format 0\n", []string{"/data/FORMAT", "format version 0"}},
		{"garbage", "hello\n", []string{"/data/FORMAT", `"hello"`}},
		{"empty", "", []string{"/data/FORMAT"}},
		{"no FORMAT but a database", "-", []string{"/data", `"pebble"`, "no FORMAT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			mustClose(t, mustOpen(t, "/data", fs))
			if tc.format == "-" {
				if err := fs.Remove("/data/FORMAT"); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFormat(t, fs, "/data", tc.format)
			}
			_, err := OpenPebble("/data", PebbleOptions{FS: fs})
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("OpenPebble = %v, want ErrFormat", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// The failed open released the directory.
			writeFormat(t, fs, "/data", formatLine())
			mustClose(t, mustOpen(t, "/data", fs))
		})
	}
}

func TestFormatFileOnDisk(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustOpen(t, dir, nil))
	content, err := readAll(vfs.Default, dir+"/FORMAT")
	if err != nil || content != "caspaxos storage format 1\n" {
		t.Fatalf("FORMAT holds %q, %v", content, err)
	}
	writeFormat(t, vfs.Default, dir, "caspaxos storage format 3\n")
	if _, err := OpenPebble(dir, PebbleOptions{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("OpenPebble = %v, want ErrFormat", err)
	}
}

func readAll(fs vfs.FS, path string) (string, error) {
	f, err := fs.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

// TestFormatFileSurvivesCrash crashes right after the first open, which
// created two directory levels: they, FORMAT and its directory entry were
// synced, so the crash image opens.
func TestFormatFileSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := mustOpen(t, "/srv/data", fs)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	mustClose(t, s)
	if content, err := readAll(crashed, "/srv/data/FORMAT"); err != nil || content != formatLine() {
		t.Fatalf("FORMAT after a crash: %q, %v", content, err)
	}
	mustClose(t, mustOpen(t, "/srv/data", crashed))
}

// TestFreshDirWithLeftoverTemp opens a new directory holding what a crash
// during the first open, or mkfs, may leave there.
func TestFreshDirWithLeftoverTemp(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("/data/lost+found", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create("/data/FORMAT.tmp", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("caspaxos stor"))
	f.Close()
	mustClose(t, mustOpen(t, "/data", fs))
}

func TestLocked(t *testing.T) {
	tests := []struct {
		name string
		fs   vfs.FS
		dir  string
	}{
		{"disk", nil, t.TempDir()},
		{"mem", vfs.NewMem(), "/data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpen(t, tc.dir, tc.fs)
			_, err := OpenPebble(tc.dir, PebbleOptions{FS: tc.fs})
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("second OpenPebble = %v, want ErrLocked", err)
			}
			if !strings.Contains(err.Error(), "LOCK") {
				t.Errorf("error %q does not name the LOCK file", err)
			}
			if _, err := s.Get("k"); err != nil {
				t.Fatalf("the first store broke: %v", err)
			}
			mustClose(t, s)
			mustClose(t, mustOpen(t, tc.dir, tc.fs))
		})
	}
}
