package acceptor

import (
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

// Tests of promises without a sync (PROTOCOL.md §12): the floor, the
// acceptor ceiling, and promise replies that wait for no write.

// After a restart, the acceptor refuses every prepare and accept below its
// floor (its stored ceiling), on every key, showing the floor as Seen and
// as Accepted; the age fence is checked first, reads pass, and the test-only
// switch Bugs.RestartWithoutFloor lets them through.
func TestAcceptorRefusesBelowFloorAfterRestart(t *testing.T) {
	st := storage.NewMemory()
	first, rec := newTestAcceptor(t, st)
	first.Handle([]protocol.Message{acceptMsg("k", 5, "v5")})
	if got := rec.Next(t); got[0].Kind != protocol.MsgAccepted {
		t.Fatalf("accept before the restart answered %v", got)
	}
	first.Stop()
	floor := protocol.RaiseCeiling(6, 0)
	if c, err := st.AcceptorCeiling(); err != nil || c != floor {
		t.Fatalf("stored ceiling %d, %v; want %d", c, err, floor)
	}
	if err := st.SetFences(map[protocol.NodeID]uint64{proposerID: 3}); err != nil {
		t.Fatal(err)
	}
	atFloor := protocol.Ballot{Counter: floor}
	past := acceptMsg("k2", floor, "v")
	past.Next = protocol.Ballot{Counter: protocol.MaxCounter + 1, Proposer: proposerID}
	tests := []struct {
		name         string
		withoutFloor bool
		m            protocol.Message
		kind         protocol.Kind
		seen         protocol.Ballot // for a refusal
		age          uint64          // for a refusal: the fence shown
	}{
		{"prepare below, on the key written", false, prepareMsg("k", 6), protocol.MsgConflict, atFloor, 0},
		{"accept below, on another key", false, acceptMsg("other", floor-1, "v"), protocol.MsgConflict, atFloor, 0},
		{"fence first", false, aged(prepareMsg("k", 6), 1), protocol.MsgConflict, protocol.Ballot{}, 3},
		{"Next past MaxCounter", false, past, protocol.MsgConflict, atFloor, 0},
		{"prepare at the floor", false, prepareMsg("k", floor), protocol.MsgPromise, protocol.Ballot{}, 0},
		{"read below", false, readMsg("k", 1), protocol.MsgReadReply, protocol.Ballot{}, 0},
		{"without the floor, prepare below", true, prepareMsg("k3", 6), protocol.MsgPromise, protocol.Ballot{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := servertest.NewRecorder()
			a, err := New(Config{ID: acceptorID, Bugs: Bugs{RestartWithoutFloor: tt.withoutFloor}}, st, rec, servertest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Stop()
			m := tt.m
			if m.Age == 0 {
				m.Age = 3
			}
			a.Handle([]protocol.Message{m})
			got := rec.Next(t)
			if len(got) != 1 || got[0].Kind != tt.kind {
				t.Fatalf("answered %v, want a %v", got, tt.kind)
			}
			if r := got[0]; tt.kind == protocol.MsgConflict && (r.Seen != tt.seen || r.Accepted != tt.seen || r.Age != tt.age) {
				t.Fatalf("refusal %v shows Seen %v, Accepted %v, Age %d; want %v, %v, %d", r, r.Seen, r.Accepted, r.Age, tt.seen, tt.seen, tt.age)
			}
		})
	}
}

// ceilingGate holds every SetAcceptorCeiling until the test releases it,
// and checks that no reply (but a read's or a floor refusal's) leaves
// before the stored acceptor ceiling is above its ballot.
type ceilingGate struct {
	*storage.Memory
	t      *testing.T
	raises chan heldRaise
	stop   chan struct{}
}

type heldRaise struct {
	ceiling uint64
	release chan struct{}
}

func (g *ceilingGate) SetAcceptorCeiling(c uint64) error {
	h := heldRaise{c, make(chan struct{})}
	select {
	case g.raises <- h:
	case <-g.stop:
		return errTestOver
	}
	select {
	case <-h.release:
	case <-g.stop:
		return errTestOver
	}
	return g.Memory.SetAcceptorCeiling(c)
}

func (g *ceilingGate) check(_ protocol.NodeID, msgs []protocol.Message) {
	c, err := g.Memory.AcceptorCeiling()
	for _, m := range msgs {
		if m.Kind != protocol.MsgReadReply && (err != nil || c <= m.Ballot.Counter) {
			g.t.Errorf("reply %v left under the stored ceiling %d (%v)", m, c, err)
		}
	}
}

func (g *ceilingGate) next(t *testing.T) heldRaise {
	t.Helper()
	select {
	case h := <-g.raises:
		return h
	case <-g.stop:
		t.Fatal("test over")
	}
	return heldRaise{}
}

// A reply leaves only once the acceptor ceiling above its ballot (and an
// accept's Next) is durable; one raise, a step above, serves the requests
// below it, those of other batches included, and a request above it asks
// for another.
func TestAcceptorRaisesCeilingBeforeReply(t *testing.T) {
	st := &ceilingGate{Memory: storage.NewMemory(), t: t, raises: make(chan heldRaise, 4), stop: make(chan struct{})}
	rec := servertest.NewRecorder()
	rec.Check = st.check
	const step = 100
	a, err := New(Config{ID: acceptorID, ceilingStep: step}, st, rec, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	defer close(st.stop)

	a.Handle([]protocol.Message{prepareMsg("a", 5)})
	r1 := st.next(t)
	if r1.ceiling != 6+step-1 {
		t.Fatalf("first raise to %d, want %d", r1.ceiling, 6+step-1)
	}
	a.Handle([]protocol.Message{prepareMsg("b", 50)}) // under r1: no raise of its own
	// b is stepped once its promise is written, which waits for no raise
	// (a's waits for r1).
	servertest.WaitFor(t, "b to be stepped", func() bool { return a.Stats().UnsyncedApplies == 1 })
	high := acceptMsg("c", 60, "v")
	high.Next = protocol.Ballot{Counter: 500, Proposer: proposerID}
	a.Handle([]protocol.Message{high}) // Next above r1: a raise of its own
	r2 := st.next(t)
	if r2.ceiling != 501+step-1 {
		t.Fatalf("second raise to %d, want %d", r2.ceiling, 501+step-1)
	}
	rec.None(t, "no ceiling is durable yet")

	close(r1.release)
	if got := replyKeys(rec.NextN(t, 2)); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("after the first raise, replies for %v, want a and b", got)
	}
	rec.None(t, "c's ceiling is not durable yet")
	close(r2.release)
	if got := rec.Next(t); len(got) != 1 || got[0].Kind != protocol.MsgAccepted {
		t.Fatalf("after the second raise, replies %v, want c accepted", got)
	}
	servertest.WaitFor(t, "the batches to finish", func() bool { return a.Stats().Batches == 3 })
	a.Handle([]protocol.Message{prepareMsg("d", 550)}) // under r2: no raise
	if got := rec.Next(t); len(got) != 1 || got[0].Kind != protocol.MsgPromise {
		t.Fatalf("replies %v, want d promised", got)
	}
	if s := a.Stats(); s.CeilingRaises != 2 {
		t.Fatalf("stats %+v, want 2 raises", s)
	}
}

// A promise reply waits for no write of its own (§12), but for the key's
// earlier write still syncing: the accepted state it shows must be durable
// before anyone sees it (protocol.SyncBeforeReply). A cold key's promise
// leaves while another key's accept is held.
func TestAcceptorPromiseRepliesWaitForEarlierWritesOnly(t *testing.T) {
	st := newGatedStore()
	a, rec := newTestAcceptor(t, st)
	a.Handle([]protocol.Message{prepareMsg("warm", 1)}) // raises the ceiling
	rec.Next(t)

	a.Handle([]protocol.Message{acceptMsg("k", 3, "v3")})
	accept := st.next(t)
	a.Handle([]protocol.Message{prepareMsg("k", 4), prepareMsg("cold", 4)})
	got := rec.Next(t)
	if len(got) != 1 || got[0].Kind != protocol.MsgPromise || got[0].Key != "cold" {
		t.Fatalf("replies %v, want only cold's promise while k's accept of 3 is held", got)
	}
	rec.None(t, "k's promise shows the accept of 3, which is not synced")
	accept.release <- nil
	var kinds []protocol.Kind
	for len(kinds) < 2 {
		for _, m := range rec.Next(t) {
			if m.Key != "k" {
				t.Fatalf("reply %v, want k's", m)
			}
			if m.Kind == protocol.MsgPromise && m.Accepted != ballot(3) {
				t.Fatalf("k's promise %v does not show the accept of 3", m)
			}
			kinds = append(kinds, m.Kind)
		}
	}
	slices.Sort(kinds)
	want := []protocol.Kind{protocol.MsgPromise, protocol.MsgAccepted}
	slices.Sort(want)
	if !slices.Equal(kinds, want) {
		t.Fatalf("k's replies %v, want its accept of 3 and its promise of 4", kinds)
	}
	// warm's, cold's, and k's (chained after the accept): none synced.
	if n := st.unsynced.Load(); n != 3 {
		t.Fatalf("%d unsynced writes, want the three promises'", n)
	}
}

// On Pebble, a prepare costs no fsync of the write-ahead log once the
// ceiling covers it; an accept costs one, also when it follows a promise
// on its key in the same batch (one write).
func TestAcceptorSyncsPerRequest(t *testing.T) {
	st, err := storage.OpenPebble("/data", storage.PebbleOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the acceptor stops
	a, rec := newTestAcceptor(t, st)
	a.Handle([]protocol.Message{prepareMsg("warm", 1)}) // raises the ceiling
	rec.Next(t)
	tests := []struct {
		msgs  []protocol.Message
		syncs uint64
	}{
		{[]protocol.Message{prepareMsg("k1", 2)}, 0},
		{[]protocol.Message{acceptMsg("k1", 2, "v")}, 1},
		{[]protocol.Message{prepareMsg("k2", 3), prepareMsg("k3", 3)}, 0},
		{[]protocol.Message{readMsg("k1", 4)}, 0},
		{[]protocol.Message{acceptMsg("k3", 5, "v")}, 1},
		{[]protocol.Message{prepareMsg("k4", 6), acceptMsg("k4", 6, "v")}, 1},
	}
	for i, tt := range tests {
		servertest.WaitFor(t, "the batches to finish", func() bool { return a.Stats().Batches == uint64(i+1) })
		before := st.Stats().WALSyncs
		a.Handle(tt.msgs)
		rec.NextN(t, len(tt.msgs))
		servertest.WaitFor(t, "the batch to finish", func() bool { return a.Stats().Batches == uint64(i+2) })
		if got := st.Stats().WALSyncs - before; got != tt.syncs {
			t.Errorf("%v: %d WAL syncs, want %d", tt.msgs, got, tt.syncs)
		}
	}
}

// A crash loses a promise written without a sync. With the floor, the
// restarted acceptor still refuses a lower ballot; without it (the broken
// variant), it promises the lower ballot: the promise is broken.
func TestAcceptorCrashLosesUnsyncedPromise(t *testing.T) {
	tests := []struct {
		name         string
		withoutFloor bool
		want         protocol.Kind
	}{
		{"floor", false, protocol.MsgConflict},
		{"without the floor: promise broken", true, protocol.MsgPromise},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			st, err := storage.OpenPebble("/data", storage.PebbleOptions{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			a, rec := newTestAcceptor(t, st)
			a.Handle([]protocol.Message{prepareMsg("k", 10)})
			if got := rec.Next(t); got[0].Kind != protocol.MsgPromise {
				t.Fatalf("prepare of 10 answered %v", got)
			}
			servertest.WaitFor(t, "the promise to be written", func() bool { return a.Stats().UnsyncedApplies == 1 })
			crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // keeps no unsynced data
			a.Stop()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			st, err = storage.OpenPebble("/data", storage.PebbleOptions{FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if reg, err := st.Get("k"); err != nil || !reg.Promise.IsZero() {
				t.Fatalf("after the crash k holds %v, %v; want the promise lost", reg, err)
			}
			rec = servertest.NewRecorder()
			a, err = New(Config{ID: acceptorID, Bugs: Bugs{RestartWithoutFloor: tt.withoutFloor}}, st, rec, servertest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Stop()
			a.Handle([]protocol.Message{prepareMsg("k", 5)})
			got := rec.Next(t)
			if len(got) != 1 || got[0].Kind != tt.want {
				t.Fatalf("prepare of 5 after promising 10 answered %v, want %v", got, tt.want)
			}
			if tt.want == protocol.MsgConflict && got[0].Seen.Counter <= 10 {
				t.Fatalf("refusal %v shows a floor at or below the lost promise", got[0])
			}
		})
	}
}

// With SyncPromises (§12 off), a promise's reply waits for its synced
// write and no ceiling is raised; the floor still comes from the stored
// ceiling, so that a run that left promises unsynced may be followed,
// after a crash, by one with SyncPromises.
func TestAcceptorSyncPromises(t *testing.T) {
	st := newGatedStore()
	if err := st.Memory.SetAcceptorCeiling(1000); err != nil {
		t.Fatal(err)
	}
	rec := servertest.NewRecorder()
	a, err := New(Config{ID: acceptorID, SyncPromises: true}, st, rec, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	defer close(st.stop)
	a.Handle([]protocol.Message{prepareMsg("k", 5)}) // below the stored ceiling: the floor refuses
	if got := rec.Next(t); len(got) != 1 || got[0].Kind != protocol.MsgConflict || got[0].Seen.Counter != 1000 {
		t.Fatalf("replies %v, want a refusal at the floor 1000", got)
	}
	a.Handle([]protocol.Message{prepareMsg("k", 2000)}) // above the ceiling: no raise
	held := st.next(t)
	rec.None(t, "the promise is not synced")
	held.release <- nil
	if got := rec.Next(t); len(got) != 1 || got[0].Kind != protocol.MsgPromise {
		t.Fatalf("replies %v, want k's promise", got)
	}
	if n := st.unsynced.Load(); n != 0 {
		t.Fatalf("%d unsynced writes, want none", n)
	}
	if c, err := st.Memory.AcceptorCeiling(); err != nil || c != 1000 || a.Stats().CeilingRaises != 0 {
		t.Fatalf("stored ceiling %d (%v), %d raises; want 1000 and none", c, err, a.Stats().CeilingRaises)
	}
}
