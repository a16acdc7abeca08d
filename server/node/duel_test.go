package node_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

var duelFlag = flag.Bool("duel", false, "run TestDuelOverSlowLinks, a measurement")

// TestDuelOverSlowLinks measures what two proposers pay that increment one
// key at once over slow links, each for itself (the key's home is down or
// far, so nobody forwards). It is a measurement, not a check of speed:
//
//	go test ./server -run TestDuelOverSlowLinks -duel -v
//
// It reports, per network, the wall time of the increments and the
// proposers' rounds and conflicts; it fails only if an increment is lost
// or counted twice.
func TestDuelOverSlowLinks(t *testing.T) {
	if !*duelFlag {
		t.Skip("a measurement: run with -duel")
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name       string
		oneWay     time.Duration
		tailChance float64       // chance that a batch is held up longer
		tail       time.Duration // by up to this much more (uniform)
	}{
		{"LAN", 100 * time.Microsecond, 0, 0},
		{"40ms one way", 40 * ms, 0, 0},
		{"heavy tail", 20 * ms, 0.2, 80 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const perClient = 100
			net := newSlowNet(tc.oneWay, tc.tailChance, tc.tail)
			defer net.close()
			ids := []protocol.NodeID{1, 2, 3}
			acceptors := protocol.Majority(1, ids...)
			var nodes []*node.Node
			for _, id := range ids {
				cfg := node.Config{ID: id, Acceptors: acceptors, Proposer: proposer.Config{RandSeed: uint64(id)}}
				ep := net.local.Endpoint(id)
				n, err := node.New(cfg, storage.NewMemory(), ep, slowForwarder{ep, 2 * tc.oneWay}, servertest.Logger(t))
				if err != nil {
					t.Fatal(err)
				}
				if err := net.local.Add(n); err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, n)
				defer n.Stop()
			}
			net.nodes = nodes
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var ok, unknown int
			for _, n := range nodes[:2] {
				wg.Go(func() {
					for range perClient {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						_, err := n.Propose(ctx, server.Request{Op: kv.Op{Kind: kv.OpIncrement, Key: "k", Delta: 1}})
						cancel()
						mu.Lock()
						switch {
						case err == nil:
							ok++
						case errors.Is(err, kv.ErrUnknownOutcome):
							unknown++
						default:
							t.Errorf("increment: %v", err)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			s, err := nodes[2].Propose(servertest.Ctx(t, 30*time.Second), server.Request{Op: kv.Op{Kind: kv.OpGet, Key: "k"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := kv.Integer(s)
			if err != nil {
				t.Fatal(err)
			}
			if got < int64(ok) || got > int64(ok+unknown) {
				t.Fatalf("counter %d after %d increments (%d unknown)", got, ok, unknown)
			}
			var prepares, accepts, conflicts uint64
			for _, n := range nodes[:2] {
				st := n.Stats().Proposer
				prepares += st.PrepareRounds
				accepts += st.AcceptRounds
				conflicts += st.Conflicts
			}
			t.Logf("%d increments (%d unknown) in %v: %v each; %d prepare rounds, %d accept rounds, %d conflicts",
				ok, unknown, took.Round(ms), (took / time.Duration(2*perClient)).Round(100*time.Microsecond), prepares, accepts, conflicts)
		})
	}
}

// slowForwarder forwards nothing (every home counts as far) and reports
// rtt as every peer's round trip, so that the proposers' timeouts follow it.
type slowForwarder struct {
	*node.Endpoint
	rtt time.Duration
}

func (f slowForwarder) RTT(protocol.NodeID) (time.Duration, bool) { return f.rtt, true }

func (f slowForwarder) Forward(context.Context, protocol.NodeID, server.Request) (protocol.State, error) {
	return protocol.State{}, server.ErrUnreachable
}

// slowNet delays every batch between two nodes on a node.Local network, keeping
// each link's order (as TCP does: a batch held up holds up those behind it).
type slowNet struct {
	local  *node.Local
	nodes  []*node.Node
	mu     sync.Mutex
	rng    *rand.Rand
	links  map[[2]protocol.NodeID]chan delayed
	wg     sync.WaitGroup
	oneWay time.Duration
	chance float64
	tail   time.Duration
}

type delayed struct {
	at   time.Time
	to   protocol.NodeID
	msgs []protocol.Message
}

func newSlowNet(oneWay time.Duration, chance float64, tail time.Duration) *slowNet {
	s := &slowNet{local: node.NewLocal(), rng: rand.New(rand.NewPCG(1, 2)), links: map[[2]protocol.NodeID]chan delayed{},
		oneWay: oneWay, chance: chance, tail: tail}
	s.local.SetHook(node.Hook{Filter: s.filter})
	return s
}

func (s *slowNet) filter(from, to protocol.NodeID, msgs []protocol.Message) []protocol.Message {
	if from == to {
		return msgs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.links == nil { // closed
		return nil
	}
	d := s.oneWay
	if s.chance > 0 && s.rng.Float64() < s.chance {
		d += time.Duration(s.rng.Int64N(int64(s.tail)))
	}
	link := [2]protocol.NodeID{from, to}
	ch := s.links[link]
	if ch == nil {
		ch = make(chan delayed, 1<<16)
		s.links[link] = ch
		s.wg.Go(func() {
			for b := range ch {
				if w := time.Until(b.at); w > 0 {
					time.Sleep(w)
				}
				s.nodes[b.to-1].Deliver(b.msgs)
			}
		})
	}
	ch <- delayed{at: time.Now().Add(d), to: to, msgs: msgs}
	return nil
}

func (s *slowNet) close() {
	s.mu.Lock()
	for _, ch := range s.links {
		close(ch)
	}
	s.links = nil
	s.mu.Unlock()
	s.wg.Wait()
}
