package acceptor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

const (
	acceptorID = protocol.NodeID(1)
	proposerID = protocol.NodeID(9)
)

func ballot(counter uint64) protocol.Ballot {
	return protocol.Ballot{Counter: counter, Proposer: proposerID}
}

func prepareMsg(key string, counter uint64) protocol.Message {
	return protocol.Message{Kind: protocol.MsgPrepare, From: proposerID, To: acceptorID, Key: key, Ballot: ballot(counter)}
}

func acceptMsg(key string, counter uint64, value string) protocol.Message {
	return protocol.Message{Kind: protocol.MsgAccept, From: proposerID, To: acceptorID, Key: key, Ballot: ballot(counter),
		State: protocol.State{Value: []byte(value), Version: counter}}
}

func readMsg(key string, counter uint64) protocol.Message {
	return protocol.Message{Kind: protocol.MsgRead, From: proposerID, To: acceptorID, Key: key, Ballot: ballot(counter)}
}

// gatedStore holds every Apply (a synced write) until the test releases
// it, or until the test ends (close), so that a failing test does not hang
// in Stop. ApplyUnsynced (promises) is not held; it counts them.
type gatedStore struct {
	*storage.Memory
	held     chan *heldApply
	stop     chan struct{}
	unsynced atomic.Int64
}

func (g *gatedStore) ApplyUnsynced(entries []storage.Entry) error {
	g.unsynced.Add(1)
	return g.Memory.ApplyUnsynced(entries)
}

var errTestOver = errors.New("test over")

type heldApply struct {
	entries []storage.Entry
	release chan error
}

func newGatedStore() *gatedStore {
	return &gatedStore{Memory: storage.NewMemory(), held: make(chan *heldApply, 16), stop: make(chan struct{})}
}

func (g *gatedStore) Apply(entries []storage.Entry) error {
	h := &heldApply{entries: entries, release: make(chan error)}
	select {
	case g.held <- h:
	case <-g.stop:
		return errTestOver
	}
	select {
	case err := <-h.release:
		if err != nil {
			return err
		}
	case <-g.stop:
		return errTestOver
	}
	return g.Memory.Apply(entries)
}

// next returns the next Apply waiting to be released.
func (g *gatedStore) next(t *testing.T) *heldApply {
	t.Helper()
	select {
	case h := <-g.held:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for an Apply")
		return nil
	}
}

func (h *heldApply) keys() []string {
	var ks []string
	for _, e := range h.entries {
		ks = append(ks, e.Key)
	}
	slices.Sort(ks)
	return ks
}

func replyKeys(msgs []protocol.Message) []string {
	var ks []string
	for _, m := range msgs {
		ks = append(ks, m.Key)
	}
	slices.Sort(ks)
	return ks
}

func newTestAcceptor(t *testing.T, st storage.Store) (*Acceptor, *servertest.Recorder) {
	t.Helper()
	rec := servertest.NewRecorder()
	a, err := New(Config{ID: acceptorID}, st, rec, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if g, ok := st.(*gatedStore); ok {
			close(g.stop)
		}
		a.Stop()
	})
	return a, rec
}

func TestAcceptorOneApplyPerBatch(t *testing.T) {
	st := storage.NewMemory()
	a, rec := newTestAcceptor(t, st)
	var batch []protocol.Message
	for i := range 100 {
		batch = append(batch, prepareMsg(fmt.Sprintf("k%03d", i), 5))
	}
	a.Handle(batch)
	replies := rec.Next(t)
	if len(replies) != 100 {
		t.Fatalf("%d replies in the first send, want all 100 in one", len(replies))
	}
	servertest.WaitFor(t, "the batch to finish", func() bool { return a.Stats().Batches == 1 })
	for _, r := range replies {
		if r.Kind != protocol.MsgPromise || r.To != proposerID || r.From != acceptorID {
			t.Fatalf("reply %v", r)
		}
		reg, err := st.Get(r.Key)
		if err != nil || reg.Promise != ballot(5) {
			t.Fatalf("stored register of %q: %v, %v", r.Key, reg, err)
		}
	}
	a.Stop()
	if s := a.Stats(); s.Applies != 1 || s.UnsyncedApplies != 1 || s.Entries != 100 || s.Batches != 1 || s.CeilingRaises != 1 {
		t.Fatalf("stats %+v, want one unsynced write of 100 entries and one ceiling raise", s)
	}
}

// A batch writing a key that another batch's unsynced write holds must not
// delay its other keys: those go in a commit of their own.
func TestAcceptorKeysDoNotWaitForOtherKeys(t *testing.T) {
	st := newGatedStore()
	a, rec := newTestAcceptor(t, st)

	a.Handle([]protocol.Message{acceptMsg("k1", 1, "v1")})
	first := st.next(t) // batch A holds k1

	a.Handle([]protocol.Message{acceptMsg("k1", 2, "v2"), acceptMsg("k2", 1, "v")})
	free := st.next(t)
	if got := free.keys(); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("batch B's first Apply writes %v, want only k2 (k1 must wait for A)", got)
	}
	free.release <- nil
	if got := replyKeys(rec.Next(t)); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("batch B sent replies for %v first, want k2 only", got)
	}
	rec.None(t, "k1's writes are not synced")

	first.release <- nil
	if got := replyKeys(rec.Next(t)); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("batch A replied for %v", got)
	}
	chained := st.next(t)
	if got := chained.keys(); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("batch B's second Apply writes %v, want k1", got)
	}
	rec.None(t, "batch B's write of k1 is not synced")
	chained.release <- nil
	last := rec.Next(t)
	if len(last) != 1 || last[0].Kind != protocol.MsgAccepted || last[0].Key != "k1" {
		t.Fatalf("last replies %v, want k1 accepted", last)
	}
	reg, _ := st.Get("k1")
	if reg.Accepted != ballot(2) || reg.Promise != ballot(2) || string(reg.State.Value) != "v2" {
		t.Fatalf("k1 stored as %v", reg)
	}
}

// A Step that writes nothing may still describe a write that is not synced
// yet; its reply must wait for that write.
func TestAcceptorReplyWaitsForUnsyncedWriteOfItsKey(t *testing.T) {
	st := newGatedStore()
	a, rec := newTestAcceptor(t, st)

	a.Handle([]protocol.Message{acceptMsg("k", 3, "v3")})
	write := st.next(t)

	// The read of k steps after A's accept; k2's accept proves B stepped
	// once its Apply shows up.
	a.Handle([]protocol.Message{readMsg("k", 4), acceptMsg("k2", 1, "v")})
	other := st.next(t)
	other.release <- nil
	if got := rec.Next(t); len(got) != 1 || got[0].Key != "k2" {
		t.Fatalf("first replies %v, want k2's accept alone", got)
	}
	rec.None(t, "the read describes an accept not synced yet")

	write.release <- nil
	var read protocol.Message
	for read.Kind != protocol.MsgReadReply {
		for _, m := range rec.Next(t) {
			if m.Kind == protocol.MsgReadReply {
				read = m
			}
		}
	}
	if read.Accepted != ballot(3) || string(read.State.Value) != "v3" {
		t.Fatalf("read reply %v, want the accept of ballot 3", read)
	}
}

func TestAcceptorStopsAfterFailedWrite(t *testing.T) {
	st := newGatedStore()
	a, rec := newTestAcceptor(t, st)

	a.Handle([]protocol.Message{acceptMsg("k", 3, "v3")})
	write := st.next(t)
	a.Handle([]protocol.Message{readMsg("k", 4), acceptMsg("k2", 1, "v")})
	other := st.next(t)

	failure := errors.New("disk on fire")
	write.release <- failure
	servertest.WaitFor(t, "the acceptor to stop after the failed write", func() bool { return a.Err() != nil })
	if err := a.Err(); !errors.Is(err, failure) {
		t.Fatalf("Err() = %v, want the failed write's error", err)
	}
	before := a.Stats().DroppedBatches
	a.Handle([]protocol.Message{prepareMsg("k3", 1)})
	if got := a.Stats().DroppedBatches; got != before+1 {
		t.Fatalf("a batch after the failure was not dropped (dropped %d, was %d)", got, before)
	}
	other.release <- nil
	a.Stop()
	for _, msgs := range rec.Pending() {
		for _, m := range msgs {
			if m.Key != "k2" {
				t.Fatalf("sent %v, which depends on a failed write", m)
			}
		}
	}
	if s := a.Stats(); s.DroppedReplies != 2 {
		t.Fatalf("stats %+v, want the accept's and the read's replies withheld", s)
	}
}

// checkingStore checks, at every write, that no two writes of one key are
// in flight at once and that ballots never go back. It also tracks what a
// crash would keep (durable): a synced Apply makes durable its own entries
// and every unsynced write applied before it started, as Pebble's ordered
// write-ahead log does.
type checkingStore struct {
	*storage.Memory
	t        *testing.T
	mu       sync.Mutex
	inflight map[string]bool
	seq      uint64
	unsynced []seqEntry          // applied without a sync, not durable yet
	durable  map[string]seqEntry // per key, the newest durable write
}

type seqEntry struct {
	seq uint64
	storage.Entry
}

func newCheckingStore(t *testing.T) *checkingStore {
	return &checkingStore{Memory: storage.NewMemory(), t: t, inflight: make(map[string]bool), durable: make(map[string]seqEntry)}
}

func (c *checkingStore) Apply(entries []storage.Entry) error { return c.write(entries, true) }

func (c *checkingStore) ApplyUnsynced(entries []storage.Entry) error { return c.write(entries, false) }

func (c *checkingStore) write(entries []storage.Entry, synced bool) error {
	c.mu.Lock()
	c.seq++
	seq := c.seq
	covered := c.seqsUnsynced() // applied before this write started
	for _, e := range entries {
		if c.inflight[e.Key] {
			c.t.Errorf("two writes of %q in flight at once", e.Key)
		}
		c.inflight[e.Key] = true
		old, _ := c.Memory.Get(e.Key)
		if e.Register.Promise.Less(old.Promise) || e.Register.Accepted.Less(old.Accepted) {
			c.t.Errorf("%q goes back from %v to %v", e.Key, old, e.Register)
		}
	}
	c.mu.Unlock()
	runtime.Gosched() // let other batches step and apply meanwhile
	err := c.Memory.Apply(entries)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		delete(c.inflight, e.Key)
	}
	if err != nil {
		return err
	}
	if !synced {
		for _, e := range entries {
			c.unsynced = append(c.unsynced, seqEntry{seq, e})
		}
		return nil
	}
	var now, rest []seqEntry
	for _, e := range c.unsynced {
		if covered[e.seq] {
			now = append(now, e)
		} else {
			rest = append(rest, e)
		}
	}
	c.unsynced = rest
	for _, e := range entries {
		now = append(now, seqEntry{seq, e})
	}
	for _, e := range now {
		if e.seq > c.durable[e.Key].seq {
			c.durable[e.Key] = e
		}
	}
	return nil
}

// seqsUnsynced returns the writes in c.unsynced. Called under c.mu.
func (c *checkingStore) seqsUnsynced() map[uint64]bool {
	seqs := make(map[uint64]bool)
	for _, e := range c.unsynced {
		seqs[e.seq] = true
	}
	return seqs
}

// checkDurable fails the test if reply m tells more than a crash would
// keep: an accepted state shown (by an accept's, a read's or a refusal's
// reply) must be durable, and every reply but a read's must leave under a
// durable acceptor ceiling above its ballot (PROTOCOL.md §12, which lets a
// promise and the accepted state a promise shows trail their reply).
func (c *checkingStore) checkDurable(m protocol.Message) {
	c.mu.Lock()
	reg := c.durable[m.Key].Register
	c.mu.Unlock()
	written, err := c.Memory.Get(m.Key)
	if err != nil {
		c.t.Errorf("get %q: %v", m.Key, err)
		return
	}
	ceiling, err := c.Memory.AcceptorCeiling()
	if err != nil {
		c.t.Errorf("acceptor ceiling: %v", err)
		return
	}
	ok := m.Kind == protocol.MsgReadReply || ceiling > m.Ballot.Counter
	switch m.Kind {
	case protocol.MsgAccepted:
		ok = ok && !reg.Accepted.Less(m.Ballot)
	case protocol.MsgReadReply:
		ok = ok && !reg.Accepted.Less(m.Accepted)
	case protocol.MsgConflict:
		// Seen may be a promise not synced yet, but one the store was given.
		seen := written.Promise
		if seen.Less(written.Accepted) {
			seen = written.Accepted
		}
		ok = ok && !seen.Less(m.Seen) && !reg.Accepted.Less(m.Accepted)
	}
	if !ok {
		c.t.Errorf("reply %v sent while a crash keeps only %v (ceiling %d)", m, reg, ceiling)
	}
}

func TestAcceptorConcurrentBatchesKeepOrderAndDurability(t *testing.T) {
	st := newCheckingStore(t)
	rec := servertest.NewRecorderSize(1 << 16)
	rec.Check = func(_ protocol.NodeID, msgs []protocol.Message) {
		for _, m := range msgs {
			st.checkDurable(m)
		}
	}
	// Ceiling step 1: every higher counter raises the ceiling, and raises
	// race each other.
	a, err := New(Config{ID: acceptorID, MaxInflightBatches: 1 << 12, ceilingStep: 1}, st, rec, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 200 {
				a.Handle(randomBatch(rng))
			}
		}()
	}
	wg.Wait()
	a.Stop()
	if s := a.Stats(); s.Batches+s.DroppedBatches != 8*200 || s.Applies == 0 || s.UnsyncedApplies == 0 || s.CeilingRaises == 0 {
		t.Fatalf("stats %+v: batches lost, nothing written, no promise unsynced or no ceiling raised", s)
	}
}

// randomBatch returns requests on a few hot keys from three proposers.
func randomBatch(rng *rand.Rand) []protocol.Message {
	n := 1 + rng.IntN(6)
	msgs := make([]protocol.Message, n)
	for i := range msgs {
		b := protocol.Ballot{Counter: 1 + rng.Uint64N(60), Proposer: protocol.NodeID(1 + rng.IntN(3))}
		m := protocol.Message{From: proposerID, To: acceptorID, Key: fmt.Sprintf("k%d", rng.IntN(4)), Ballot: b}
		switch rng.IntN(3) {
		case 0:
			m.Kind = protocol.MsgPrepare
		case 1:
			m.Kind = protocol.MsgAccept
			m.State = protocol.State{Value: []byte(b.String()), Version: b.Counter}
			if rng.IntN(2) == 0 {
				m.Next = protocol.Ballot{Counter: b.Counter + 1, Proposer: b.Proposer}
			}
		default:
			m.Kind = protocol.MsgRead
		}
		msgs[i] = m
	}
	return msgs
}

// countingStore counts Gets.
type countingStore struct {
	*storage.Memory
	gets atomic.Int64
}

func (c *countingStore) Get(key string) (protocol.Register, error) {
	c.gets.Add(1)
	return c.Memory.Get(key)
}

func TestAcceptorCachesRegisters(t *testing.T) {
	tests := []struct {
		name       string
		cacheBytes int64
		// keys handled one batch after the other, and the Gets expected
		// after all of them.
		keys []string
		gets int64
	}{
		{"hot key read once", 0, []string{"k", "k", "k"}, 1},
		{"no cache", -1, []string{"k", "k", "k"}, 3},
		{"room for one", 300, []string{"k1", "k2", "k1", "k1"}, 3},
		{"room for two", 600, []string{"k1", "k2", "k1", "k2"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &countingStore{Memory: storage.NewMemory()}
			rec := servertest.NewRecorder()
			a, err := New(Config{ID: acceptorID, CacheBytes: tt.cacheBytes}, st, rec, servertest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Stop()
			for i, k := range tt.keys {
				a.Handle([]protocol.Message{acceptMsg(k, uint64(i+1), fmt.Sprint(i))})
				if r := rec.Next(t); len(r) != 1 || r[0].Kind != protocol.MsgAccepted {
					t.Fatalf("batch %d: replies %v", i, r)
				}
				servertest.WaitFor(t, "the batch to finish", func() bool { return a.Stats().Batches == uint64(i+1) })
			}
			if got := st.gets.Load(); got != tt.gets {
				t.Fatalf("%d Gets, want %d", got, tt.gets)
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			for k, s := range a.slots {
				if reg, _ := st.Memory.Get(k); s.refs != 0 || s.elem == nil || !reflect.DeepEqual(reg, s.reg) {
					t.Fatalf("cached %q: %v (refs %d), store holds %v", k, s.reg, s.refs, reg)
				}
			}
		})
	}
}

// Settle waits for the register writes stepped before it (a store may
// show them before they are durable, and a listing's scan must not tell
// of them until they are), costs nothing once they are done, and reports
// a write that failed.
func TestAcceptorSettleWaitsForWritesInFlight(t *testing.T) {
	for _, tt := range []struct {
		name    string
		release error
	}{{"write succeeds", nil}, {"write fails", errors.New("disk gone")}} {
		t.Run(tt.name, func(t *testing.T) {
			st := newGatedStore()
			a, _ := newTestAcceptor(t, st)
			done, cancel := context.WithCancel(context.Background())
			cancel()
			if err := a.Settle(done); err != nil {
				t.Fatalf("Settle with nothing in flight: %v", err)
			}
			a.Handle([]protocol.Message{acceptMsg("k", 1, "v")})
			write := st.next(t)
			if err := a.Settle(done); !errors.Is(err, context.Canceled) {
				t.Fatalf("Settle while an accept's write is held returned %v, want it to wait (context.Canceled)", err)
			}
			settled := make(chan error, 1)
			go func() { settled <- a.Settle(context.Background()) }()
			write.release <- tt.release
			err := <-settled
			if tt.release == nil && err != nil {
				t.Fatalf("Settle after the write: %v", err)
			}
			if tt.release != nil && !errors.Is(err, tt.release) {
				t.Fatalf("Settle after a failed write returned %v, want the failure", err)
			}
		})
	}
}
