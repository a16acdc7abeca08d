package transport

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
	"google.golang.org/protobuf/proto"
)

func randomMessage(rng *rand.Rand) protocol.Message {
	ballot := func() protocol.Ballot {
		return protocol.Ballot{Counter: rng.Uint64(), Proposer: protocol.NodeID(rng.Uint64())}
	}
	m := protocol.Message{
		Kind:     protocol.Kind(1 + rng.IntN(int(protocol.MsgConflict))),
		From:     protocol.NodeID(rng.Uint64()),
		To:       protocol.NodeID(rng.Uint64()),
		Key:      string([]byte{byte(rng.Uint32()), 0xff, 0}),
		Ballot:   ballot(),
		Next:     ballot(),
		Accepted: ballot(),
		Seen:     ballot(),
		State:    protocol.State{Version: rng.Uint64(), Deleted: rng.IntN(2) == 0, Created: rng.Uint64()},
		Age:      rng.Uint64(),
	}
	if rng.IntN(2) == 0 {
		m.State.Attrs = protocol.Attrs{Lease: rng.Uint64(), Flags: rng.Uint64(), LockIndex: rng.Uint64()}
	}
	if rng.IntN(2) == 0 {
		m.State.Value = []byte("some value")
	}
	return m
}

func TestWireRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		m := randomMessage(rng)
		b, err := proto.Marshal(ToWire(m))
		if err != nil {
			t.Fatal(err)
		}
		var w peerpb.Message
		if err := proto.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		got, ok := FromWire(&w)
		if !ok || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %v gave %v (ok=%v)", m, got, ok)
		}
	}
}

func TestUnknownKindDropped(t *testing.T) {
	for _, k := range []uint32{0, uint32(protocol.MsgConflict) + 1, 200} {
		if _, ok := FromWire(&peerpb.Message{Kind: k}); ok {
			t.Errorf("kind %d accepted", k)
		}
	}
}
