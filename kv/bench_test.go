package kv

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// BenchmarkHotIncrement models `caspaxos bench --workloads incr --clients
// 64` in the core alone: one key, 64 increments always in flight on one
// proposer (so they are composed into batches as on a node), three
// acceptors answering at once. With request IDs the key's table is full
// (protocol.MaxRequestRecords) from the start, as it is on a hot key after
// its first second. It measures the core's CPU per increment: the changes,
// the composition, the acceptors' steps; neither storage nor the network.
func BenchmarkHotIncrement(b *testing.B) {
	for _, tc := range []struct {
		name string
		ids  bool
	}{{"no-ids", false}, {"ids", true}} {
		b.Run(tc.name, func(b *testing.B) { benchHotIncrement(b, tc.ids) })
	}
}

func benchHotIncrement(b *testing.B, ids bool) {
	const (
		inFlight = 64
		t0       = int64(1733400000000)
	)
	w := DefaultIdempotency().RequestWindow()
	p, err := protocol.NewProposer(protocol.ProposerConfig{ID: 1, Acceptors: protocol.Majority(1, 1, 2, 3)})
	if err != nil {
		b.Fatal(err)
	}
	var regs [3]protocol.Register
	// rand is a deterministic stand-in for crypto/rand: every ID unique.
	var n uint64
	newReq := func(issued int64) Request {
		n++
		var r [10]byte
		binary.BigEndian.PutUint64(r[2:], n)
		text, err := NewRequestID(time.UnixMilli(issued), bytes.NewReader(r[:]))
		if err != nil {
			b.Fatal(err)
		}
		req, err := ParseRequestID(text)
		if err != nil {
			b.Fatal(err)
		}
		return req
	}
	now := t0
	calls := 0 // changes run, retries of a batch included
	incr := Op{Kind: OpIncrement, Key: "hot", Delta: 1}
	change := func() protocol.Change {
		if !ids {
			return incr.Change()
		}
		now++
		ch := Idempotent(incr, newReq(now-5), now, w)
		return func(s protocol.State) (protocol.Write, error) { calls++; return ch(s) }
	}
	if ids { // fill the table
		tab := protocol.RequestTable{}
		for range protocol.MaxRequestRecords {
			now++
			tab = tab.With(protocol.RequestRecord{ID: newReq(now - 5).ID, Outcome: protocol.RequestApplied, Version: 1, IssuedMillis: now - 5, Value: []byte("1")})
		}
		for i := range regs {
			regs[i].State = protocol.State{Value: []byte("0"), Version: 1, Created: 1, Requests: protocol.EncodeRequests(tab)}
		}
	}
	next := protocol.ReqID(0)
	propose := func() {
		next++
		p.Propose(next, "hot", change())
	}
	for range inFlight {
		propose()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var msgs []protocol.Message
	for done := 0; done < b.N; {
		rd := p.Ready()
		for _, r := range rd.Results {
			if r.Err != nil {
				b.Fatalf("increment %d: %v", r.ID, r.Err)
			}
			done++
			propose()
		}
		msgs = append(msgs[:0], rd.Messages...)
		p.Recycle(rd)
		for _, m := range msgs {
			reg, reply, _ := protocol.Step(regs[m.To-1], m)
			regs[m.To-1] = reg
			p.Step(reply)
		}
		if len(msgs) == 0 && len(rd.Results) == 0 {
			b.Fatal("the proposer stalled")
		}
	}
	if ids {
		b.ReportMetric(float64(calls)/float64(b.N), "changes/op")
	}
}
