package protocol

import (
	"fmt"
	"strconv"
	"testing"
)

// cluster is a synchronous test network: proposers and acceptors on one
// queue, delivered in order unless a test drops or reorders them.
type cluster struct {
	t         *testing.T
	acceptors map[NodeID]map[string]Register
	proposers map[NodeID]*Proposer
	queue     []Message
	results   map[ReqID]Result
	timers    []Timer
	ceilings  map[NodeID]uint64
	drop      func(Message) bool
}

func newCluster(t *testing.T, acceptors []NodeID, proposers []NodeID, mod func(*ProposerConfig)) *cluster {
	t.Helper()
	c := &cluster{
		t:         t,
		acceptors: make(map[NodeID]map[string]Register),
		proposers: make(map[NodeID]*Proposer),
		results:   make(map[ReqID]Result),
		ceilings:  make(map[NodeID]uint64),
	}
	for _, id := range acceptors {
		c.acceptors[id] = make(map[string]Register)
	}
	for _, id := range proposers {
		cfg := ProposerConfig{ID: id, Acceptors: Majority(1, acceptors...)}
		if mod != nil {
			mod(&cfg)
		}
		p, err := NewProposer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.proposers[id] = p
	}
	return c
}

func (c *cluster) collect(id NodeID) {
	rd := c.proposers[id].Ready()
	if rd.Ceiling != 0 {
		c.ceilings[id] = rd.Ceiling
	}
	for _, m := range rd.Messages {
		if m.Ballot.Counter > c.ceilings[id] {
			c.t.Fatalf("message %v uses a counter above the persisted ceiling %d", m, c.ceilings[id])
		}
	}
	c.queue = append(c.queue, rd.Messages...)
	for _, r := range rd.Results {
		if _, dup := c.results[r.ID]; dup {
			c.t.Fatalf("request %d answered twice", r.ID)
		}
		c.results[r.ID] = r
	}
	c.timers = append(c.timers, rd.Timers...)
	c.proposers[id].Recycle(rd) // everything was copied: every test runs with reuse
}

// run delivers messages until none are left.
func (c *cluster) run() {
	for id := range c.proposers {
		c.collect(id)
	}
	for len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		if c.drop != nil && c.drop(m) {
			continue
		}
		if m.Kind.IsRequest() {
			c.stepAcceptor(m)
			continue
		}
		c.proposers[m.To].Step(m)
		c.collect(m.To)
	}
}

// stepAcceptor hands a request to its acceptor and queues the reply.
func (c *cluster) stepAcceptor(m Message) {
	regs := c.acceptors[m.To]
	next, reply, _ := Step(regs[m.Key], m)
	regs[m.Key] = next
	c.queue = append(c.queue, reply)
}

// fireAll fires every pending timer once (of any kind), then runs.
func (c *cluster) fireAll(proposer NodeID) {
	ts := c.timers
	c.timers = nil
	for _, t := range ts {
		c.proposers[proposer].Fire(t)
		c.collect(proposer)
	}
	c.run()
}

func incr(delta int64) Change {
	return func(cur State) (Write, error) {
		var n int64
		if cur.Exists() {
			var err error
			if n, err = strconv.ParseInt(string(cur.Value), 10, 64); err != nil {
				return Write{}, err
			}
		}
		return Write{Kind: WriteSet, Value: []byte(strconv.FormatInt(n+delta, 10))}, nil
	}
}

func set(v string) Change {
	return func(State) (Write, error) { return Write{Kind: WriteSet, Value: []byte(v)}, nil }
}

var errRefused = fmt.Errorf("refused")

func refuse(State) (Write, error) { return Write{}, errRefused }
