package proposer

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/servertest"
)

// loopback is a server.Transport for one proposer: three acceptors in memory that
// step requests at once (no durability needed here) and deliver the
// replies from a goroutine of their own. drop, if set, decides per message,
// requests and replies alike.
type loopback struct {
	mu   sync.Mutex
	regs map[protocol.NodeID]map[string]protocol.Register
	p    atomic.Pointer[Proposer]
	drop func(m protocol.Message) bool
	// check runs on every Send, before anything is delivered.
	check func(msgs []protocol.Message)
	// hold is locked while replies are delivered; a test holds it to keep
	// them back.
	hold sync.Mutex
	wg   sync.WaitGroup
}

func newLoopback() *loopback {
	return &loopback{regs: map[protocol.NodeID]map[string]protocol.Register{1: {}, 2: {}, 3: {}}}
}

func (l *loopback) Send(to protocol.NodeID, msgs []protocol.Message) error {
	if l.check != nil {
		l.check(msgs)
	}
	var replies []protocol.Message
	l.mu.Lock()
	for _, m := range msgs {
		if l.drop != nil && l.drop(m) {
			continue
		}
		next, reply, _ := protocol.Step(l.regs[to][m.Key], m)
		l.regs[to][m.Key] = next
		if l.drop == nil || !l.drop(reply) {
			replies = append(replies, reply)
		}
	}
	l.mu.Unlock()
	if p := l.p.Load(); p != nil && len(replies) > 0 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.hold.Lock()
			defer l.hold.Unlock()
			p.Deliver(replies)
		}()
	}
	return nil
}

// ceilings is a Store in memory that remembers every ceiling set.
type ceilings struct {
	v   atomic.Uint64
	set atomic.Int64
	err error
	age atomic.Uint64
}

func (c *ceilings) Age() (uint64, error) { return c.age.Load(), nil }

func (c *ceilings) SetAge(v uint64) error {
	if c.err != nil {
		return c.err
	}
	c.age.Store(v)
	return nil
}

func (c *ceilings) Ceiling() (uint64, error) { return c.v.Load(), nil }

func (c *ceilings) SetCeiling(v uint64) error {
	if c.err != nil {
		return c.err
	}
	c.v.Store(v)
	c.set.Add(1)
	return nil
}

// proposerID is the test proposer's node ID, outside the acceptors 1..3.
const proposerID = protocol.NodeID(9)

func newTestProposer(t *testing.T, l *loopback, ceil Store, mod func(*Config)) *Proposer {
	t.Helper()
	cfg := Config{
		ID:             proposerID,
		Acceptors:      protocol.Majority(1, 1, 2, 3),
		AttemptTimeout: 20 * time.Millisecond,
		ReadTimeout:    10 * time.Millisecond,
		BackoffBase:    time.Millisecond,
		BackoffMax:     4 * time.Millisecond,
		RandSeed:       1,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, ceil, l, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	l.p.Store(p)
	t.Cleanup(func() {
		p.Stop()
		l.wg.Wait()
	})
	return p
}

func incr(key string) server.Request {
	return server.Request{Op: kv.Op{Kind: kv.OpIncrement, Key: key, Delta: 1}}
}

func TestProposerPersistsCeilingBeforeSending(t *testing.T) {
	l := newLoopback()
	ceil := &ceilings{}
	ceil.v.Store(1000) // as if a previous run had reserved up to 1000
	l.check = func(msgs []protocol.Message) {
		for _, m := range msgs {
			if m.Ballot.Counter > ceil.v.Load() || m.Next.Counter > ceil.v.Load() {
				t.Errorf("%v sent above the persisted ceiling %d", m, ceil.v.Load())
			}
			if m.Ballot.Counter <= 1000 {
				t.Errorf("%v reuses a counter the previous run may have used", m)
			}
		}
	}
	p := newTestProposer(t, l, ceil, func(c *Config) { c.CeilingStep = 4 })
	for i := range 20 {
		s, err := p.Propose(servertest.Ctx(t, 5*time.Second), incr("k"))
		if err != nil || string(s.Value) != strconv.Itoa(i+1) {
			t.Fatalf("increment %d: %v, %v", i, s, err)
		}
	}
	if n := ceil.set.Load(); n < 5 {
		t.Fatalf("ceiling persisted %d times for 20 changes with step 4", n)
	}
}

func TestProposerStopsWhenCeilingCannotBePersisted(t *testing.T) {
	l := newLoopback()
	var sent atomic.Int64
	l.check = func(msgs []protocol.Message) { sent.Add(int64(len(msgs))) }
	p := newTestProposer(t, l, &ceilings{err: errors.New("disk full")}, nil)
	_, err := p.Propose(servertest.Ctx(t, 5*time.Second), incr("k"))
	if !errors.Is(err, server.ErrStopped) {
		t.Fatalf("Propose: %v, want server.ErrStopped", err)
	}
	<-p.Done()
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d messages sent without a persisted ceiling", n)
	}
}

func TestProposerOutcomes(t *testing.T) {
	tests := []struct {
		name string
		drop func(m protocol.Message) bool
		// cancelOnAccept cancels the caller's context once an accept is
		// sent; otherwise its deadline ends it.
		cancelOnAccept bool
		want           error
	}{
		{"no acceptor answers", func(protocol.Message) bool { return true }, false, kv.ErrNoQuorum},
		{"one acceptor of three", func(m protocol.Message) bool { return m.To == 2 || m.To == 3 }, false, kv.ErrNoQuorum},
		{"accepts unconfirmed", func(m protocol.Message) bool { return m.Kind == protocol.MsgAccepted }, true, kv.ErrUnknownOutcome},
		{"all well", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoopback()
			l.drop = tt.drop
			const deadline = 150 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			ctxErr := context.DeadlineExceeded
			if tt.cancelOnAccept {
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
				ctxErr = context.Canceled
				l.check = func(msgs []protocol.Message) {
					if slices.ContainsFunc(msgs, func(m protocol.Message) bool { return m.Kind == protocol.MsgAccept }) {
						cancel()
					}
				}
			}
			p := newTestProposer(t, l, &ceilings{}, nil)
			start := time.Now()
			_, err := p.Propose(ctx, incr("k"))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Propose: %v, want %v", err, tt.want)
			}
			if tt.want != nil && !errors.Is(err, ctxErr) {
				t.Fatalf("Propose: %v does not wrap the context's error", err)
			}
			if took := time.Since(start); took > deadline+2*time.Second {
				t.Fatalf("Propose took %v with a deadline of %v", took, deadline)
			}
			if tt.want == kv.ErrNoQuorum {
				for id, regs := range l.regs {
					if regs["k"].State.Version != 0 {
						t.Fatalf("acceptor %d accepted %v after ErrNoQuorum", id, regs["k"])
					}
				}
			}
		})
	}
}

func TestProposerStopAnswersPending(t *testing.T) {
	l := newLoopback()
	l.drop = func(protocol.Message) bool { return true }
	p := newTestProposer(t, l, &ceilings{}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Propose(context.Background(), incr("k"))
		errc <- err
	}()
	servertest.WaitFor(t, "the driver to take the request", func() bool { return p.Stats().Requests == 1 })
	p.Stop()
	if err := <-errc; !errors.Is(err, server.ErrStopped) {
		t.Fatalf("pending Propose: %v, want server.ErrStopped", err)
	}
	if _, err := p.Propose(context.Background(), incr("k")); !errors.Is(err, server.ErrStopped) {
		t.Fatalf("Propose after Stop: %v, want server.ErrStopped", err)
	}
}

func TestProposerStatsCountOneRoundTripsAndComposition(t *testing.T) {
	l := newLoopback()
	// Nothing is lost here, and replies are held while 64 goroutines
	// start: an attempt that timed out meanwhile (on a loaded machine)
	// would be retried with a prepare, and the counts below would differ.
	p := newTestProposer(t, l, &ceilings{}, func(c *Config) { c.AttemptTimeout = time.Minute })
	ctx := servertest.Ctx(t, 10*time.Second)
	for range 5 {
		if _, err := p.Propose(ctx, incr("k")); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	if s.PrepareRounds != 1 || s.AcceptRounds != 5 || s.OneRoundTrip != 4 {
		t.Fatalf("stats %+v: want 1 prepare, then 4 one-round-trip accepts", s)
	}
	// While the replies to the first of 64 concurrent changes are held,
	// the other 63 wait, and then go in one composed accept.
	l.hold.Lock()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Propose(ctx, incr("k")); err != nil {
				t.Error(err)
			}
		}()
	}
	servertest.WaitFor(t, "the driver to take all 64 changes", func() bool { return p.Stats().Requests == 69 })
	l.hold.Unlock()
	wg.Wait()
	s = p.Stats()
	if s.ComposedChanges != 69 || s.ComposedBatches != 7 || s.Composed[5] != 1 || s.AcceptRounds != 7 || s.OneRoundTrip != 6 {
		t.Fatalf("stats %+v: want 63 changes composed into one accept", s)
	}
}

func TestBackoffGrowsAndStaysBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const base, maxDelay = 2 * time.Millisecond, 100 * time.Millisecond
	tests := []struct {
		retry    int
		lo, high time.Duration
	}{
		{1, base / 2, base},
		{2, base, 2 * base},
		{4, 4 * base, 8 * base},
		{7, maxDelay / 2, maxDelay},
		{1000, maxDelay / 2, maxDelay},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 100 {
			d := server.Backoff(base, maxDelay, tt.retry, rng)
			if d < tt.lo || d > tt.high {
				t.Fatalf("retry %d: %v outside [%v, %v]", tt.retry, d, tt.lo, tt.high)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("retry %d: only %d distinct delays in 100: no jitter", tt.retry, len(seen))
		}
	}
}

func TestProposerConfigValidate(t *testing.T) {
	good := Config{ID: 1, Acceptors: protocol.Majority(1, 1, 2, 3)}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"zero ID", func(c *Config) { c.ID = 0 }},
		{"negative timeout", func(c *Config) { c.AttemptTimeout = -1 }},
		{"backoff max below base", func(c *Config) { c.BackoffBase, c.BackoffMax = time.Second, time.Millisecond }},
		{"disjoint quorums", func(c *Config) { c.Acceptors.PrepareQuorum = 1 }},
	}
	for _, tt := range tests {
		cfg := good
		cfg.Acceptors = good.Acceptors.Clone()
		tt.mod(&cfg)
		if err := cfg.validate(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	cfg := good
	if err := cfg.validate(); err != nil || cfg.AttemptTimeout <= 0 || cfg.BackoffMax < cfg.BackoffBase {
		t.Fatalf("defaults: %v, %+v", err, cfg)
	}
}

// A request the driver does not take before its deadline (the driver is
// stuck and its queue is full) is refused as overloaded: nothing of it
// left the node. It still counts as no quorum for callers that match that.
func TestProposerBusyDriverRefusesOverloaded(t *testing.T) {
	l := newLoopback()
	block := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(block) }) }
	defer unblock()
	l.check = func([]protocol.Message) { <-block } // the driver hangs in its first Send
	p := newTestProposer(t, l, &ceilings{}, nil)
	// The driver takes at most 1+maxDrain before it sends (and hangs),
	// and its queue holds maxDrain: the rest are never taken. Every
	// request is submitted before its deadline (a request already past
	// its deadline is no quorum, not overload): the deadline starts once
	// all have started, and leaves them time to reach the proposer even
	// under the race detector.
	const n = 3 * maxDrain
	const neverTaken = n - 2*maxDrain - 1
	errs := make(chan error, n)
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var ctx context.Context
	for i := range n {
		go func() {
			started.Done()
			<-release
			_, err := p.Propose(ctx, incr("k"+strconv.Itoa(i)))
			errs <- err
		}()
	}
	started.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	close(release)
	for range neverTaken { // only they can answer while the driver hangs
		err := <-errs
		if code, _ := kv.Code(err); code != kv.CodeOverloaded || !errors.Is(err, kv.ErrNoQuorum) {
			t.Fatalf("a request the driver never took: %v (code %s), want overloaded and no quorum", err, code)
		}
	}
	unblock()
	for range n - neverTaken {
		<-errs
	}
}
