package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Fuzz targets of what a peer sends: the bytes of a connection after the
// preface. `go test` runs their seeds; scripts/fuzz.sh fuzzes them
// (README.md, "make fuzz").

// maxFuzzFrames bounds the frames one input is read as.
const maxFuzzFrames = 16

// FuzzReadFrame reads a connection's bytes as frames, as serveConn does,
// and checks each frame that decodes: it re-encodes (appendFrame) to bytes
// that decode to the same frame; each protocol message FromWire takes
// converts back to the same wire fields and survives its own round trip;
// each message it drops is of an unknown kind; each forward reply decodes
// to the outcome its code names. Whatever the bytes, nothing panics.
func FuzzReadFrame(f *testing.F) {
	seeds := []*peerpb.Frame{
		{From: 1},
		{From: 2, Ping: 7},
		{From: 3, Pong: 7, Leaving: true, AcksLeaving: true},
		{From: 1, Messages: []*peerpb.Message{
			ToWire(protocol.Message{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: 4, Proposer: 1}}),
			ToWire(protocol.Message{Kind: protocol.MsgPromise, From: 2, To: 1, Key: "k", Ballot: protocol.Ballot{Counter: 4, Proposer: 1},
				Accepted: protocol.Ballot{Counter: 3, Proposer: 2}, State: protocol.State{Value: []byte("v"), Version: 9}}),
			ToWire(protocol.Message{Kind: protocol.MsgConflict, From: 2, To: 1, Key: "\x00", Seen: protocol.Ballot{Counter: 1<<64 - 1, Proposer: 3}, Age: 5}),
		}},
		{From: 2, Forwards: []*peerpb.Forward{{Id: 1, Op: uint32(kv.OpPut), Key: []byte("k"), Value: []byte("v"), TimeoutNanos: 1e9}}},
		{From: 2, ForwardReplies: []*peerpb.ForwardReply{
			{Id: 1, Value: []byte("v"), Version: 3},
			{Id: 2, ErrorCode: kv.CodeVersionMismatch, CurrentVersion: 4, ExpectedVersion: 3},
			{Id: 3, ErrorCode: kv.CodeNoQuorum, ErrorMessage: "no quorum"},
			{Id: 4, ErrorCode: codeNotSent},
			{Id: 5, ErrorCode: "from a later release"},
		}},
	}
	var all []byte
	for _, s := range seeds {
		b, err := appendFrame(nil, s, testMaxFrame)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	f.Add(binary.BigEndian.AppendUint32(nil, testMaxFrame+1))
	f.Add([]byte{0, 0, 0, 2, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bufio.NewReader(bytes.NewReader(stream))
		var body []byte
		for range maxFuzzFrames {
			fr := &peerpb.Frame{}
			var err error
			if body, err = readFrame(r, body, fr, testMaxFrame); err != nil {
				return
			}
			checkFrame(t, fr)
		}
	})
}

// checkFrame checks the properties FuzzReadFrame states of a decoded frame.
func checkFrame(t *testing.T, fr *peerpb.Frame) {
	t.Helper()
	enc, err := appendFrame(nil, fr, testMaxFrame)
	if err != nil {
		t.Fatalf("frame %v decoded but does not encode: %v", fr, err)
	}
	again := &peerpb.Frame{}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(enc)), nil, again, testMaxFrame); err != nil || !proto.Equal(again, fr) {
		t.Fatalf("frame %v re-encoded decodes to %v, %v", fr, again, err)
	}
	for _, w := range fr.GetMessages() {
		m, ok := FromWire(w)
		known := w.GetKind() >= uint32(protocol.MsgPrepare) && w.GetKind() <= uint32(protocol.MsgConflict)
		if ok != known {
			t.Fatalf("FromWire of a message of kind %d: ok=%v", w.GetKind(), ok)
		}
		if !ok {
			continue
		}
		if back := ToWire(m); !sameWire(back, w) {
			t.Fatalf("message %v converted to %v, which converts back to %v", w, m, back)
		}
		checkMessageRoundTrip(t, m)
	}
	for _, rep := range fr.GetForwardReplies() {
		checkReply(t, rep)
	}
}

// sameWire compares two wire messages field by field, ignoring unknown
// fields (a later release's) and nil against empty bytes.
func sameWire(a, b *peerpb.Message) bool {
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	a.ProtoReflect().SetUnknown(nil)
	b.ProtoReflect().SetUnknown(nil)
	return proto.Equal(a, b)
}

// checkMessageRoundTrip: m marshalled and read back is m.
func checkMessageRoundTrip(t *testing.T, m protocol.Message) {
	t.Helper()
	b, err := proto.Marshal(ToWire(m))
	if err != nil {
		t.Fatalf("message %v does not marshal: %v", m, err)
	}
	var w peerpb.Message
	if err := proto.Unmarshal(b, &w); err != nil {
		t.Fatalf("message %v marshalled does not unmarshal: %v", m, err)
	}
	got, ok := FromWire(&w)
	if !ok || !sameMessage(got, m) {
		t.Fatalf("round trip of %v gave %v (ok=%v)", m, got, ok)
	}
}

func sameMessage(a, b protocol.Message) bool {
	return a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.Key == b.Key && a.Ballot == b.Ballot &&
		a.Next == b.Next && a.Accepted == b.Accepted && a.Seen == b.Seen && a.State.Equal(b.State) && a.Age == b.Age
}

// checkReply: a forward reply decodes to its state when it has no code, to
// ErrUnreachable for codeNotSent, and otherwise to an error that carries
// its code again (CodeInternal for a code this build does not know), with
// the current version of a mismatch.
func checkReply(t *testing.T, r *peerpb.ForwardReply) {
	t.Helper()
	s, err := decodeReply(r, 2)
	switch code := r.GetErrorCode(); code {
	case "":
		want := protocol.State{Value: r.GetValue(), Version: r.GetVersion(), Deleted: r.GetDeleted(), Requests: nilIfEmpty(r.GetRequests()),
			Created: r.GetCreated(), Attrs: protocol.Attrs{Lease: r.GetLease(), Flags: r.GetFlags(), LockIndex: r.GetLockIndex()}}
		if err != nil || !s.Equal(want) {
			t.Fatalf("reply %v decoded to %v, %v; want %v", r, s, err, want)
		}
	case codeNotSent:
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("reply %v decoded to %v, want ErrUnreachable", r, err)
		}
	default:
		if err == nil {
			t.Fatalf("reply %v with code %q decoded to no error", r, code)
		}
		got, current := kv.Code(err)
		want, wantCurrent := code, uint64(0)
		switch {
		case code == kv.CodeVersionMismatch:
			wantCurrent = r.GetCurrentVersion()
		case !knownCode(code):
			want = kv.CodeInternal
		}
		if got != want || current != wantCurrent {
			t.Fatalf("reply %v decoded to %v: code %q, current %d; want %q, %d", r, err, got, current, want, wantCurrent)
		}
	}
}

// knownCode reports whether code is one kv rebuilds into its own error.
func knownCode(code string) bool {
	switch code {
	case kv.CodeNotFound, kv.CodeNotAnInteger, kv.CodeOverflow, kv.CodeNoQuorum, kv.CodeUnknownOutcome,
		kv.CodeKeyTooLarge, kv.CodeValueTooLarge, kv.CodeBadRequest, kv.CodeInternal:
		return true
	}
	return false
}

// FuzzWireMessage: every protocol message of a known kind survives
// ToWire, marshalling, unmarshalling and FromWire unchanged.
func FuzzWireMessage(f *testing.F) {
	f.Add(uint8(protocol.MsgPrepare), uint64(1), uint64(2), "k", uint64(4), uint64(1), uint64(0), uint64(0), []byte(nil), uint64(0), false, uint64(0))
	f.Add(uint8(protocol.MsgPromise), uint64(2), uint64(1), "", uint64(1<<64-1), uint64(3), uint64(7), uint64(2), []byte("v"), uint64(9), true, uint64(5))
	f.Fuzz(func(t *testing.T, kind uint8, from, to uint64, key string, bc, bp, ac, ap uint64, value []byte, version uint64, deleted bool, age uint64) {
		k := protocol.MsgPrepare + protocol.Kind(kind%uint8(protocol.MsgConflict))
		m := protocol.Message{
			Kind: k, From: protocol.NodeID(from), To: protocol.NodeID(to), Key: key,
			Ballot:   protocol.Ballot{Counter: bc, Proposer: protocol.NodeID(bp)},
			Next:     protocol.Ballot{Counter: bc ^ ac, Proposer: protocol.NodeID(bp ^ ap)},
			Accepted: protocol.Ballot{Counter: ac, Proposer: protocol.NodeID(ap)},
			Seen:     protocol.Ballot{Counter: ac + bc, Proposer: protocol.NodeID(ap + bp)},
			State:    protocol.State{Value: value, Version: version, Deleted: deleted},
			Age:      age,
		}
		checkMessageRoundTrip(t, m)
		fr, err := appendFrame(nil, &peerpb.Frame{From: from, Messages: []*peerpb.Message{ToWire(m)}}, testMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		got := &peerpb.Frame{}
		if _, err := readFrame(bufio.NewReader(bytes.NewReader(fr)), nil, got, testMaxFrame); err != nil || len(got.GetMessages()) != 1 {
			t.Fatalf("frame of %v: %v, %v", m, got, err)
		}
		if back, ok := FromWire(got.GetMessages()[0]); !ok || !sameMessage(back, m) {
			t.Fatalf("frame of %v carried %v (ok=%v)", m, back, ok)
		}
	})
}

// FuzzFromWire: FromWire takes exactly the messages of a known kind, and
// what it takes converts back (ToWire) to the same wire fields.
func FuzzFromWire(f *testing.F) {
	f.Add(uint32(protocol.MsgPrepare), uint64(1), uint64(2), []byte("k"), uint64(4), uint64(1), []byte(nil), uint64(0))
	f.Add(uint32(protocol.MsgConflict), uint64(2), uint64(1), []byte{}, uint64(1<<64-1), uint64(3), []byte("v"), uint64(9))
	f.Add(uint32(0), uint64(0), uint64(0), []byte(nil), uint64(0), uint64(0), []byte(nil), uint64(0))
	f.Fuzz(func(t *testing.T, kind uint32, from, to uint64, key []byte, counter, proposer uint64, value []byte, version uint64) {
		w := &peerpb.Message{Kind: kind, From: from, To: to, Key: key, BallotCounter: counter, BallotProposer: proposer,
			NextCounter: counter + 1, AcceptedProposer: proposer ^ 1, SeenCounter: counter / 2, Value: value, Version: version,
			Deleted: version%2 == 1, Age: counter ^ version, Lease: proposer, Flags: counter, LockIndex: version / 3}
		m, ok := FromWire(w)
		known := kind >= uint32(protocol.MsgPrepare) && kind <= uint32(protocol.MsgConflict)
		if ok != known {
			t.Fatalf("FromWire of a message of kind %d: ok=%v, as %v", kind, ok, m.Kind)
		}
		if ok && !sameWire(ToWire(m), w) {
			t.Fatalf("message %v converted to %v, which converts back to %v", w, m, ToWire(m))
		}
	})
}

// FuzzForwardOp: a forwarded operation converts field for field, and one
// whose kind is not the wire's is refused by Validate (the receiver runs
// nothing it was not asked to run).
func FuzzForwardOp(f *testing.F) {
	f.Add(uint32(kv.OpPut), []byte("k"), []byte("v"), uint64(0), int64(0))
	f.Add(uint32(kv.OpIncrement), []byte("n"), []byte(nil), uint64(0), int64(-5))
	f.Add(uint32(99), []byte("k"), []byte(nil), uint64(3), int64(0))
	f.Fuzz(func(t *testing.T, kind uint32, key, value []byte, version uint64, delta int64) {
		fw := &peerpb.Forward{Id: 1, Op: kind, Key: key, Value: value, Version: version, Delta: delta, Lease: version ^ 1, Flags: uint64(delta)}
		op := forwardOp(fw)
		if op.Key != string(key) || !bytes.Equal(op.Value, value) || op.Version != version || op.Delta != delta ||
			op.Lease != fw.GetLease() || op.Flags != fw.GetFlags() {
			t.Fatalf("forward %v converted to %+v", fw, op)
		}
		if uint32(op.Kind) != kind && op.Validate(kv.DefaultLimits) == nil {
			t.Fatalf("forward of kind %d converted to a valid op of kind %v", kind, op.Kind)
		}
	})
}
