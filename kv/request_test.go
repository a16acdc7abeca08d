package kv

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// FuzzParseRequestID: a request ID either parses, and then it is a version
// 7 UUID whose timestamp NewRequestID would have written, or it fails with
// ErrBadRequestID.
func FuzzParseRequestID(f *testing.F) {
	id, _ := NewRequestID(time.UnixMilli(1733400000000), rand.Reader)
	f.Add(id)
	f.Add("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b")
	f.Add("0190a1b2-c3d4-4e5f-8a6b-7c8d9e0f1a2b") // version 4
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		req, err := ParseRequestID(s)
		if err != nil {
			if !errors.Is(err, ErrBadRequestID) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if req.Text != s || len(req.ID) != 16 || req.IssuedMillis < 0 || req.IssuedMillis >= 1<<48 {
			t.Fatalf("%q parsed to %+v", s, req)
		}
		again, err := NewRequestID(time.UnixMilli(req.IssuedMillis), bytes.NewReader(make([]byte, 10)))
		if err != nil || again[:13] != lower(s[:13]) {
			t.Fatalf("%q: its timestamp writes %q", s, again)
		}
	})
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

// run applies ch to cur as a proposer would (protocol.Apply), turning a
// repeated request's refusal into its first outcome.
func run(t *testing.T, cur protocol.State, ch protocol.Change) (protocol.State, error) {
	t.Helper()
	w, err := ch(cur)
	if first, ok := Outcome(err); ok {
		return first, nil
	}
	if err != nil {
		return cur, err
	}
	return protocol.Apply(cur, w, 0)
}

func TestIdempotent(t *testing.T) {
	c := DefaultIdempotency()
	w := c.RequestWindow()
	t0 := time.UnixMilli(1733400000000)
	id, _ := NewRequestID(t0, rand.Reader)
	req, _ := ParseRequestID(id)
	now := t0.UnixMilli() + 20
	incr := Op{Kind: OpIncrement, Key: "k", Delta: 5, RequestID: id}

	s1, err := run(t, protocol.State{}, Idempotent(incr, req, now, w))
	if err != nil || string(s1.Value) != "5" || s1.Version != 1 {
		t.Fatalf("first: %v, %v", s1, err)
	}
	// Repeated: nothing changes, the first outcome comes back.
	s2, err := run(t, s1, Idempotent(incr, req, now+1000, w))
	if err != nil || !s2.Equal(protocol.State{Value: []byte("5"), Version: 1, Created: 1}) {
		t.Fatalf("repeat: %v, %v", s2, err)
	}
	// After another write: the version of the first outcome.
	s3, _ := run(t, s1, Put([]byte("x")))
	s4, err := run(t, s3, Idempotent(incr, req, now+2000, w))
	if err != nil || s4.Version != 1 || string(s4.Value) != "5" {
		t.Fatalf("repeat after a write: %v, %v", s4, err)
	}
	// A refused write records nothing: its retry may still apply.
	cas := Op{Kind: OpCompareAndSwap, Key: "k", Version: 9, Value: []byte("y"), RequestID: id}
	if _, err := run(t, protocol.State{}, Idempotent(cas, req, now, w)); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("refused cas: %v", err)
	}
	// Too old, once pruned past: refused, never applied.
	late := now + c.Window.Milliseconds() + 1
	if _, err := run(t, protocol.State{}, Idempotent(incr, req, late, w)); !errors.Is(err, ErrRequestExpired) {
		t.Fatalf("expired: %v", err)
	}
	other, _ := NewRequestID(time.UnixMilli(late), rand.Reader)
	oreq, _ := ParseRequestID(other)
	s5, _ := run(t, s3, Idempotent(Op{Kind: OpPut, Value: []byte("z")}, oreq, late, w))
	if tab, _ := protocol.DecodeRequests(s5.Requests); len(tab.Records) != 1 || tab.Horizon != late-w.WindowMillis {
		t.Fatalf("pruned table: %+v", tab)
	}
	if _, err := run(t, s5, Idempotent(incr, req, late-w.WindowMillis+10, w)); !errors.Is(err, ErrRequestExpired) {
		t.Fatalf("a retry whose record was pruned, at a proposer whose clock is behind: %v", err)
	}
	// From the future.
	future, _ := NewRequestID(time.UnixMilli(now+c.MaxClockSkew.Milliseconds()+1), rand.Reader)
	freq, _ := ParseRequestID(future)
	if _, err := run(t, protocol.State{}, Idempotent(incr, freq, now, w)); !errors.Is(err, ErrRequestFromFuture) {
		t.Fatalf("future: %v", err)
	}
}

func TestOutcomeQuery(t *testing.T) {
	w := DefaultIdempotency().RequestWindow()
	t0 := time.UnixMilli(1733400000000)
	id, _ := NewRequestID(t0, rand.Reader)
	req, _ := ParseRequestID(id)
	now := t0.UnixMilli() + 10
	put := Op{Kind: OpPut, Value: []byte("v"), RequestID: id}

	applied, _ := run(t, protocol.State{}, Idempotent(put, req, now, w))
	q, err := run(t, applied, OutcomeQuery(req, now+1, w))
	if r, ok := RequestOutcome(q, id); err != nil || !ok || r.Outcome != protocol.RequestApplied || r.Version != applied.Version || !q.Equal(applied) {
		t.Fatalf("applied: %+v %v %v", r, ok, err)
	}
	// Unknown: recorded as not applied, and a late attempt is refused.
	q2, err := run(t, protocol.State{}, OutcomeQuery(req, now+1, w))
	if r, ok := RequestOutcome(q2, id); err != nil || !ok || r.Outcome != protocol.RequestNotApplied || q2.Exists() {
		t.Fatalf("not applied: %+v %v %v", r, ok, err)
	}
	if _, err := run(t, q2, Idempotent(put, req, now+2, w)); !errors.Is(err, ErrRequestNotApplied) {
		t.Fatalf("late attempt after 'not applied': %v", err)
	}
}

// TestIdempotentComposed: the same request proposed twice while its key is
// busy is composed into one batch with its repeat and other writes; the
// repeat sees the record its first attempt left earlier in the batch (the
// table's index, carried from state to state) and answers with the first
// outcome: the counter rises once for it.
func TestIdempotentComposed(t *testing.T) {
	w := DefaultIdempotency().RequestWindow()
	t0 := int64(1733400000000)
	p, err := protocol.NewProposer(protocol.ProposerConfig{ID: 1, Acceptors: protocol.Majority(1, 1, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	newReq := func(i byte) Request {
		text, _ := NewRequestID(time.UnixMilli(t0), bytes.NewReader(bytes.Repeat([]byte{i}, 10)))
		req, _ := ParseRequestID(text)
		return req
	}
	incr := Op{Kind: OpIncrement, Key: "k", Delta: 1}
	dup := newReq(9)
	// The first change makes the key busy; the next four wait and are
	// composed into one batch.
	changes := []Request{newReq(1), newReq(2), dup, newReq(3), dup}
	for i, req := range changes {
		p.Propose(protocol.ReqID(i+1), "k", Idempotent(incr, req, t0+10, w))
	}
	var regs [3]protocol.Register
	results := map[protocol.ReqID]protocol.Result{}
	for len(results) < len(changes) {
		rd := p.Ready()
		for _, r := range rd.Results {
			results[r.ID] = r
		}
		if len(rd.Messages) == 0 && len(rd.Results) == 0 {
			t.Fatalf("stalled with %d results", len(results))
		}
		for _, m := range rd.Messages {
			reg, reply, _ := protocol.Step(regs[m.To-1], m)
			regs[m.To-1] = reg
			p.Step(reply)
		}
	}
	if b := results[2].Ballot; results[3].Ballot != b || results[5].Ballot != b || results[1].Ballot == b {
		t.Fatalf("not composed as meant: ballots %v %v %v %v %v", results[1].Ballot, b, results[3].Ballot, results[4].Ballot, results[5].Ballot)
	}
	first := results[3]
	repeat, ok := Outcome(results[5].Err)
	if first.Err != nil || !ok || repeat.Version != first.State.Version || !bytes.Equal(repeat.Value, first.State.Value) {
		t.Fatalf("first attempt %v %v; repeat %v (%v)", first.State, first.Err, repeat, results[5].Err)
	}
	final := results[4].State
	if string(final.Value) != "4" {
		t.Fatalf("counter %q after 4 distinct increments and a repeat, want 4", final.Value)
	}
	tab, err := protocol.DecodeRequests(final.Requests)
	if err != nil || len(tab.Records) != 4 {
		t.Fatalf("table of %d records (%v), want 4", len(tab.Records), err)
	}
}
