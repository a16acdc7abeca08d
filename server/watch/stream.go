package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// The hint streams: one goroutine per member of the accept set keeps its
// stream open, reopening it with a backoff after it breaks. A stream
// counts towards HintsWhole from its first ack (of the whole interest,
// sent first on every open) until it breaks.

// Backoff bounds between two opens of a stream.
const (
	openRetryMin = 20 * time.Millisecond
)

func (h *Hub) runStream(ctx context.Context, id protocol.NodeID, s *stream) {
	defer h.wg.Done()
	delay := openRetryMin
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		st, err := h.deps.Source.Open(sctx, id)
		if err == nil {
			err = h.follow(sctx, cancel, s, st)
			delay = openRetryMin
		}
		cancel()
		h.mu.Lock()
		s.open, s.acked, s.outbox = false, 0, nil
		if !h.closed {
			h.checkWhole(false)
		}
		h.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		h.log.Debug("watch: hint stream broke; resyncing", slog.Uint64("acceptor", uint64(id)), slog.Any("error", err))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, h.cfg.ResyncInterval)
	}
}

// follow sends the whole interest, then the changes as they come, and
// takes the stream's batches until it breaks.
func (h *Hub) follow(ctx context.Context, cancel context.CancelFunc, s *stream, st Stream) error {
	h.mu.Lock()
	s.open = true
	s.outbox = append(s.outbox[:0], change{seq: h.seq, add: h.interest()})
	kick(s.kick)
	h.mu.Unlock()
	go h.send(ctx, cancel, s, st)
	// A stream silent past StreamTimeout (no heartbeat) is broken.
	watchdog := time.AfterFunc(h.cfg.StreamTimeout, cancel)
	defer watchdog.Stop()
	for {
		b, err := st.Recv()
		if err != nil {
			return err
		}
		watchdog.Reset(h.cfg.StreamTimeout)
		h.onBatch(s, b)
	}
}

// send sends s's interest changes in order until ctx ends or a send
// fails (which ends the stream).
func (h *Hub) send(ctx context.Context, cancel context.CancelFunc, s *stream, st Stream) {
	for {
		select {
		case <-s.kick:
		case <-ctx.Done():
			return
		}
		h.mu.Lock()
		out := s.outbox
		s.outbox = nil
		h.mu.Unlock()
		for _, c := range out {
			if err := st.Send(c.seq, c.add, c.remove); err != nil {
				cancel()
				return
			}
		}
	}
}

// onBatch takes one batch of a stream: its ack, its hints, its overflow.
func (h *Hub) onBatch(s *stream, b Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if b.Ack > s.acked {
		first := s.acked == 0
		s.acked = b.Ack
		close(h.acked)
		h.acked = make(chan struct{})
		if first {
			h.checkWhole(false)
		}
	}
	for _, hint := range b.Hints {
		ks := h.keys[hint.Key]
		if ks == nil {
			if !h.covered(hint.Key) {
				continue // no longer watched
			}
			ks = h.key(hint.Key)
		}
		if h.cfg.Bugs.RawAccepts {
			h.apply(hint.Key, ks, hint.State, ks.gen) // the broken variant: no confirming read
			continue
		}
		if !protocol.WatchHintNewer(protocol.WatchMark{Version: ks.top}, hint.State) {
			continue
		}
		if !ks.hinted || hint.State.Version > ks.hint.Version {
			ks.hint = hint.State
		}
		ks.hinted, ks.tries = true, 0
		h.enqueue(hint.Key)
	}
	if b.Overflow {
		h.checkWhole(true)
	}
}
