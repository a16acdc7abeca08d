package storage_test

import (
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// TestApplyUnsyncedCrash: a crash keeps the acceptor ceiling once
// SetAcceptorCeiling returned, keeps an unsynced write once a later synced
// write returned (a prefix of the writes survives), and may lose an
// unsynced write that nothing synced after (it does not sync), but never
// half of it.
func TestApplyUnsyncedCrash(t *testing.T) {
	promise := func(c uint64) protocol.Register {
		return protocol.Register{Promise: protocol.Ballot{Counter: c, Proposer: 1}}
	}
	tests := []struct {
		name       string
		syncAfter  bool // a synced write follows the unsynced one
		unsyncedPC int  // of the unsynced data the crash keeps
	}{
		{"synced after, crash keeps nothing unsynced", true, 0},
		{"synced after, crash keeps some", true, 50},
		{"nothing synced after, crash keeps nothing unsynced", false, 0},
		{"nothing synced after, crash keeps all", false, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := storage.OpenPebble("/data", storage.PebbleOptions{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetAcceptorCeiling(1 << 16); err != nil {
				t.Fatal(err)
			}
			if err := s.ApplyUnsynced([]storage.Entry{{Key: "a", Register: promise(7)}, {Key: "b", Register: promise(8)}}); err != nil {
				t.Fatal(err)
			}
			if tt.syncAfter {
				if err := s.Apply([]storage.Entry{{Key: "c", Register: promise(9)}}); err != nil {
					t.Fatal(err)
				}
			}
			cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: tt.unsyncedPC}
			if tt.unsyncedPC > 0 {
				cfg.RNG = rand.New(rand.NewPCG(1, 2))
			}
			clone := fs.CrashClone(cfg)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = storage.OpenPebble("/data", storage.PebbleOptions{FS: clone})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if c, err := s.AcceptorCeiling(); err != nil || c != 1<<16 {
				t.Fatalf("AcceptorCeiling after the crash = %d, %v; want %d", c, err, 1<<16)
			}
			a, errA := s.Get("a")
			b, errB := s.Get("b")
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			kept := a.Promise.Counter == 7
			if kept != (b.Promise.Counter == 8) {
				t.Fatalf("half of an unsynced write survived: a %v, b %v", a, b)
			}
			if tt.syncAfter && !kept {
				t.Fatalf("an unsynced write was lost although a later synced write returned")
			}
			if !tt.syncAfter && tt.unsyncedPC == 0 && kept {
				t.Fatalf("the write survived a crash that kept no unsynced data: ApplyUnsynced synced it")
			}
		})
	}
}

// PebbleStats counts durable writes: ApplyUnsynced is not an Apply.
func TestApplyUnsyncedNotCountedAsApply(t *testing.T) {
	s, err := storage.OpenPebble("/data", storage.PebbleOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := protocol.Register{Promise: protocol.Ballot{Counter: 1, Proposer: 1}}
	tests := []struct {
		write            func([]storage.Entry) error
		applies, entries uint64
	}{
		{s.ApplyUnsynced, 0, 0},
		{s.Apply, 1, 2},
	}
	for i, tt := range tests {
		before := s.Stats()
		if err := tt.write([]storage.Entry{{Key: "a", Register: reg}, {Key: "b", Register: reg}}); err != nil {
			t.Fatal(err)
		}
		after := s.Stats()
		if a, e := after.Applies-before.Applies, after.Entries-before.Entries; a != tt.applies || e != tt.entries {
			t.Errorf("write %d counted %d applies of %d entries, want %d of %d", i, a, e, tt.applies, tt.entries)
		}
	}
}
