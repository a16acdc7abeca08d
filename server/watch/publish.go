package watch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// The acceptor side: a Publisher is told of every accepted state once it
// is durable (acceptor.Hinter) and passes those of watched keys to its
// subscriptions, one per node that watches through this acceptor.

// Hint is one accept an acceptor made durable: a candidate, not a chosen
// state. Nobody may deliver it to a watcher without confirming it.
type Hint struct {
	Key    string
	Ballot protocol.Ballot
	State  protocol.State
}

// Interest is a set of watched keys and prefixes.
type Interest struct {
	Keys     []string
	Prefixes []string
}

func (i Interest) empty() bool { return len(i.Keys) == 0 && len(i.Prefixes) == 0 }

// Batch is what a hint stream carries to the watching node: the hints
// since the last batch (the latest per key only), Overflow when some were
// dropped for the bound (the node then re-reads what it watches), and Ack,
// the highest interest change the acceptor has taken: every accept made
// durable after the change took effect is hinted.
type Batch struct {
	Ack      uint64
	Hints    []Hint
	Overflow bool
}

// ErrClosed: the subscription (or the hub) was closed.
var ErrClosed = errors.New("caspaxos/watch: closed")

// Registers are an acceptor's durable registers (storage.Store): Scan
// calls fn with every key at or after start, in byte order, until fn
// returns false.
type Registers interface {
	Scan(start string, fn func(key string, reg protocol.Register) bool) error
}

// Publisher is the acceptor side of the hint streams of one acceptor.
type Publisher struct {
	maxPending int
	regs       Registers

	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewPublisher returns a Publisher whose subscriptions keep at most
// maxPending hints each (the latest per key) before they overflow, and
// that reads regs, if not nil, for the registers of each key and prefix a
// subscription adds: an accept made durable just before the key was
// watched is hinted too, since it may be chosen later by acceptors whose
// streams are not open (a prefix with more than maxPending keys
// overflows, and the node resyncs).
func NewPublisher(maxPending int, regs Registers) *Publisher {
	if maxPending < 1 {
		maxPending = DefaultConfig().MaxPendingHints
	}
	return &Publisher{maxPending: maxPending, regs: regs, subs: map[*Subscription]struct{}{}}
}

// Accepted takes an accept made durable (acceptor.Hinter). It never
// blocks on a subscriber: a slow one has its pending hints coalesced per
// key, and overflows past the bound.
func (p *Publisher) Accepted(key string, b protocol.Ballot, st protocol.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs {
		s.offer(Hint{Key: key, Ballot: b, State: st}, p.maxPending)
	}
}

// Subscribe opens a subscription with no interest.
func (p *Publisher) Subscribe() *Subscription {
	s := &Subscription{p: p, keys: map[string]int{}, prefixes: map[string]int{},
		pending: map[string]Hint{}, wake: make(chan struct{}, 1)}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	return s
}

// Subscription is one watching node's hint stream from a Publisher.
type Subscription struct {
	p *Publisher

	mu       sync.Mutex
	keys     map[string]int // refcounts: a key added twice is removed twice
	prefixes map[string]int
	pending  map[string]Hint
	overflow bool
	ack      uint64
	acked    bool // ack not sent yet
	wake     chan struct{}
	closed   bool
}

// offer queues h if the subscription watches its key. Called under p.mu.
func (s *Subscription) offer(h Hint, maxPending int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.matches(h.Key) {
		return
	}
	s.queue(h, maxPending)
}

func (s *Subscription) queue(h Hint, maxPending int) {
	if old, ok := s.pending[h.Key]; ok && old.Ballot.Compare(h.Ballot) > 0 {
		return
	}
	if _, ok := s.pending[h.Key]; !ok && len(s.pending) >= maxPending {
		s.overflow = true
	} else {
		s.pending[h.Key] = h
	}
	s.signal()
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) matches(key string) bool {
	if s.keys[key] > 0 {
		return true
	}
	for p := range s.prefixes {
		if kv.PrefixShows(p, key) {
			return true
		}
	}
	return false
}

// Change applies one interest change, numbered seq (rising), and acks it
// in the next batch. Every accept made durable after Change returns is
// hinted if it matches. Each added key's durable register is hinted too
// (see NewPublisher).
func (s *Subscription) Change(seq uint64, add, remove Interest) error {
	s.p.mu.Lock() // no accept is offered while the filter changes
	s.mu.Lock()
	for _, k := range add.Keys {
		s.keys[k]++
	}
	for _, p := range add.Prefixes {
		s.prefixes[p]++
	}
	for _, k := range remove.Keys {
		if s.keys[k]--; s.keys[k] <= 0 {
			delete(s.keys, k)
		}
	}
	for _, p := range remove.Prefixes {
		if s.prefixes[p]--; s.prefixes[p] <= 0 {
			delete(s.prefixes, p)
		}
	}
	s.ack, s.acked = max(s.ack, seq), true
	closed := s.closed
	s.mu.Unlock()
	s.p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if s.p.regs != nil {
		for _, k := range add.Keys {
			if err := s.hintStored(k, func(key string) bool { return key == k }); err != nil {
				return err
			}
		}
		for _, p := range add.Prefixes {
			if err := s.hintStored(p, func(key string) bool { return kv.PrefixShows(p, key) }); err != nil {
				return err
			}
		}
	}
	s.signal()
	return nil
}

// hintStored queues a hint of each stored register from start on while
// in says the key is wanted, until the subscription overflows.
func (s *Subscription) hintStored(start string, in func(string) bool) error {
	return s.p.regs.Scan(start, func(key string, reg protocol.Register) bool {
		if !in(key) {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if reg.State.Version > 0 {
			s.queue(Hint{Key: key, Ballot: reg.Accepted, State: reg.State}, s.p.maxPending)
		}
		return !s.overflow && !s.closed
	})
}

// HeartbeatInterval is how often an idle subscription's Next answers an
// empty batch, so that the watching node can tell a silent stream (a link
// cut without a reset) from an idle one (Config.StreamTimeout).
const HeartbeatInterval = time.Second

// Next waits for the next batch: pending hints, an overflow or an ack; or
// an empty one after HeartbeatInterval without any.
func (s *Subscription) Next(ctx context.Context) (Batch, error) {
	beat := time.NewTimer(HeartbeatInterval)
	defer beat.Stop()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Batch{}, ErrClosed
		}
		if len(s.pending) > 0 || s.overflow || s.acked {
			b := Batch{Ack: s.ack, Overflow: s.overflow, Hints: make([]Hint, 0, len(s.pending))}
			for _, h := range s.pending {
				b.Hints = append(b.Hints, h)
			}
			clear(s.pending)
			s.overflow, s.acked = false, false
			s.mu.Unlock()
			return b, nil
		}
		ack := s.ack
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-beat.C:
			return Batch{Ack: ack}, nil
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

// Close ends the subscription; Next answers ErrClosed.
func (s *Subscription) Close() {
	s.p.mu.Lock()
	delete(s.p.subs, s)
	s.p.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}
