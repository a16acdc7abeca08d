package watch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// stored is a fake acceptor store: registers by key.
type stored map[string]protocol.Register

func (s stored) Scan(start string, fn func(string, protocol.Register) bool) error {
	var keys []string
	for k := range s {
		if k >= start {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn(k, s[k]) {
			return nil
		}
	}
	return nil
}

func nextBatch(t *testing.T, sub *Subscription) Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hintKeys(b Batch) []string {
	var ks []string
	for _, h := range b.Hints {
		ks = append(ks, h.Key)
	}
	slices.Sort(ks)
	return ks
}

// A subscription hints the stored registers of what it adds (an accept
// made durable just before may be chosen later), the accepts that match
// it, the latest per key only, and overflows past its bound.
func TestPublisher(t *testing.T) {
	b := func(c uint64) protocol.Ballot { return protocol.Ballot{Counter: c, Proposer: 1} }
	reg := func(c uint64, v string) protocol.Register {
		return protocol.Register{Promise: b(c), Accepted: b(c), State: protocol.State{Value: []byte(v), Version: c}}
	}
	regs := stored{"a": reg(1, "a"), "p/1": reg(2, "p1"), "p/2": reg(3, "p2"), "q": reg(4, "q"), "p/0": {Promise: b(9)}}
	pub := NewPublisher(3, regs)
	sub := pub.Subscribe()
	defer sub.Close()
	if err := sub.Change(1, Interest{Keys: []string{"a", "missing"}, Prefixes: []string{"p/"}}, Interest{}); err != nil {
		t.Fatal(err)
	}
	first := nextBatch(t, sub)
	if got := hintKeys(first); first.Ack != 1 || first.Overflow || !slices.Equal(got, []string{"a", "p/1", "p/2"}) {
		t.Fatalf("first batch ack %d overflow %v hints %v; want ack 1, the stored a, p/1, p/2 (p/0 holds only a promise)", first.Ack, first.Overflow, got)
	}
	pub.Accepted("q", b(5), protocol.State{Version: 5})
	pub.Accepted("p/3", b(6), protocol.State{Version: 6})
	pub.Accepted("p/3", b(7), protocol.State{Version: 7})
	next := nextBatch(t, sub)
	if len(next.Hints) != 1 || next.Hints[0].Key != "p/3" || next.Hints[0].State.Version != 7 {
		t.Fatalf("hints %+v; want p/3's latest accept alone", next.Hints)
	}
	for i, k := range []string{"p/4", "p/5", "p/6", "p/7"} {
		pub.Accepted(k, b(uint64(10+i)), protocol.State{Version: 1})
	}
	if over := nextBatch(t, sub); !over.Overflow || len(over.Hints) != 3 {
		t.Fatalf("4 keys past a bound of 3: overflow %v with %d hints; want an overflow and 3", over.Overflow, len(over.Hints))
	}
	if err := sub.Change(2, Interest{}, Interest{Prefixes: []string{"p/"}}); err != nil {
		t.Fatal(err)
	}
	pub.Accepted("p/8", b(20), protocol.State{Version: 1})
	if last := nextBatch(t, sub); last.Ack != 2 || len(last.Hints) != 0 {
		t.Fatalf("after removing p/: %+v; want the ack of 2 and no hint", last)
	}
}
