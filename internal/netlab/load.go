package netlab

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Driver runs the operations of one client against its own node. Each
// method classifies its error into Out.Status; it never retries a write.
type Driver interface {
	Get(ctx context.Context, key string) Out
	PutIf(ctx context.Context, key string, expect uint64, value int64) Out
	Incr(ctx context.Context, key string) Out
}

// Loop is what a client does, over and over.
type Loop string

const (
	// LoopIncr: the server-side read-modify-write (caspaxos's incr).
	LoopIncr Loop = "incr"
	// LoopGetPut: the client-side one, a Get and then a PutIf on the
	// version read.
	LoopGetPut Loop = "get+put"
)

// Client is one closed-loop client: it changes its own key through its own
// node, and records every operation and the time of every success (a whole
// read-modify-write done).
type Client struct {
	Name string // e.g. "n1 incr"
	Node int    // the index of its node
	Loop Loop
	Key  string

	d         Driver
	start     time.Time
	mu        sync.Mutex
	ops       []porcupine.Operation
	successes []time.Duration // since start
	latencies []time.Duration // of each success
	errors    int
}

// NewClient returns a client of node that runs loop on key through d.
func NewClient(name string, node int, loop Loop, key string, d Driver) *Client {
	return &Client{Name: name, Node: node, Loop: loop, Key: key, d: d}
}

// Options bound a run of clients.
type Options struct {
	// OpTimeout is each operation's deadline (default 1s).
	OpTimeout time.Duration
	// ErrorPause is how long a client waits after a failed operation before
	// the next (default 10ms), so that a node that refuses at once is not
	// hammered.
	ErrorPause time.Duration
}

// Run runs every client from start until end (operations in flight at end
// finish within their deadline), or until ctx is done.
func Run(ctx context.Context, clients []*Client, start, end time.Time, o Options) {
	if o.OpTimeout <= 0 {
		o.OpTimeout = time.Second
	}
	if o.ErrorPause <= 0 {
		o.ErrorPause = 10 * time.Millisecond
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		c.start = start
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx, i, end, o)
		}()
	}
	wg.Wait()
}

func (c *Client) run(ctx context.Context, id int, end time.Time, o Options) {
	for ctx.Err() == nil && time.Now().Before(end) {
		t0 := time.Now()
		var ok bool
		if c.Loop == LoopIncr {
			ok = c.do(ctx, id, o, Op{Key: c.Key, Kind: Incr}).Status == OK
		} else {
			ok = c.getPut(ctx, id, o)
		}
		now := time.Now()
		c.mu.Lock()
		if ok {
			c.successes = append(c.successes, now.Sub(c.start))
			c.latencies = append(c.latencies, now.Sub(t0))
		} else {
			c.errors++
		}
		c.mu.Unlock()
		if !ok {
			pause(ctx, o.ErrorPause)
		}
	}
}

func (c *Client) getPut(ctx context.Context, id int, o Options) bool {
	got := c.do(ctx, id, o, Op{Key: c.Key, Kind: Get})
	var expect uint64
	switch got.Status {
	case OK:
		expect = got.Version
	case NotFound:
	default:
		return false
	}
	return c.do(ctx, id, o, Op{Key: c.Key, Kind: PutIf, Expect: expect, Value: got.Value + 1}).Status == OK
}

// do runs one operation and records it for the history: a refusal before
// sending is left out, as is a read without an answer (neither had an
// effect); a write without an answer may take effect at any later time.
func (c *Client) do(ctx context.Context, id int, o Options, op Op) Out {
	octx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	call := time.Now()
	var out Out
	switch op.Kind {
	case Get:
		out = c.d.Get(octx, op.Key)
	case PutIf:
		out = c.d.PutIf(octx, op.Key, op.Expect, op.Value)
	case Incr:
		out = c.d.Incr(octx, op.Key)
	}
	ret := time.Now()
	cancel()
	rec := porcupine.Operation{ClientId: id, Input: op, Call: call.UnixNano(), Output: out, Return: ret.UnixNano()}
	switch {
	case out.Status == NotApplied, out.Status == Unknown && op.Kind == Get:
		return out
	case out.Status == Unknown:
		rec.Return = math.MaxInt64
	}
	c.mu.Lock()
	c.ops = append(c.ops, rec)
	c.mu.Unlock()
	return out
}

// Final reads the client's key once more after the run and adds the read to
// the history: an acknowledged write that was lost shows there.
func (c *Client) Final(ctx context.Context, id int, o Options) Out {
	if o.OpTimeout <= 0 {
		o.OpTimeout = 5 * time.Second
	}
	return c.do(ctx, id, o, Op{Key: c.Key, Kind: Get})
}

// History returns the operations of every client.
func History(clients []*Client) []porcupine.Operation {
	var all []porcupine.Operation
	for _, c := range clients {
		c.mu.Lock()
		all = append(all, c.ops...)
		c.mu.Unlock()
	}
	return all
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Probe reads the client's key without recording it (a read has no effect):
// for waiting until the node serves.
func (c *Client) Probe(ctx context.Context) Out { return c.d.Get(ctx, c.Key) }

// LastAcked returns the value of the client's last acknowledged write (an
// Incr or PutIf answered OK), false if none was.
func (c *Client) LastAcked() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.ops) - 1; i >= 0; i-- {
		op, out := c.ops[i].Input.(Op), c.ops[i].Output.(Out)
		if op.Kind != Get && out.Status == OK {
			return out.Value, true
		}
	}
	return 0, false
}

// SuccessesBetween counts the client's successes completed in [from, to)
// since its start.
func (c *Client) SuccessesBetween(from, to time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.successes {
		if t >= from && t < to {
			n++
		}
	}
	return n
}
