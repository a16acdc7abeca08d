package storage_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/storage/storagetest"
)

// openPebble opens a store in dir on fs, failing the test on error.
func openPebble(t *testing.T, dir string, opts storage.PebbleOptions) *storage.Pebble {
	t.Helper()
	s, err := storage.OpenPebble(dir, opts)
	if err != nil {
		t.Fatalf("OpenPebble(%s): %v", dir, err)
	}
	return s
}

func TestPebbleConformance(t *testing.T) {
	t.Run("disk", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return openPebble(t, t.TempDir(), storage.PebbleOptions{})
		})
	})
	t.Run("mem", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return openPebble(t, "/data", storage.PebbleOptions{FS: vfs.NewMem()})
		})
	})
}
