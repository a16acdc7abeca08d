package acceptor

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// hints records what a Hinter is told.
type hints struct {
	mu  sync.Mutex
	got []string
	ch  chan struct{}
}

func (h *hints) Accepted(key string, b protocol.Ballot, st protocol.State) {
	h.mu.Lock()
	h.got = append(h.got, key+"="+string(st.Value)+"@"+b.String())
	h.mu.Unlock()
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

func (h *hints) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// An accept is hinted only once its write is synced, and never when the
// write failed; reads and promises are not hinted.
func TestAcceptorHintsAfterSync(t *testing.T) {
	st := newGatedStore()
	a, rec := newTestAcceptor(t, st)
	h := &hints{ch: make(chan struct{}, 1)}
	a.SetHinter(h)

	a.Handle([]protocol.Message{acceptMsg("k", 3, "v3"), readMsg("r", 1)})
	write := st.next(t)
	rec.Next(t) // the read's reply needs no write
	if got := h.list(); len(got) != 0 {
		t.Fatalf("hinted %v before the accept was synced", got)
	}
	write.release <- nil
	select {
	case <-h.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no hint after the sync")
	}
	want := "k=v3@" + ballot(3).String()
	if got := h.list(); len(got) != 1 || got[0] != want {
		t.Fatalf("hints %v, want [%s]", got, want)
	}

	a.Handle([]protocol.Message{acceptMsg("k2", 4, "v4")})
	st.next(t).release <- errors.New("disk on fire")
	if a.Stop(); len(h.list()) != 1 {
		t.Fatalf("hints %v: an accept whose write failed was hinted", h.list())
	}
}
