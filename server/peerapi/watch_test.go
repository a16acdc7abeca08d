package peerapi

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/watch"
)

// A hint stream over a real connection: the interest change is acked,
// an accept of a watched key arrives with its ballot and state, one of
// another key does not, and the stream breaks when the server stops.
func TestWatchHintsOverTheWire(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := watch.NewPublisher(0, nil)
	s := grpc.NewServer()
	RegisterWatch(s, pub)
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &AdminClients{}
	defer cl.Close()
	st, err := cl.OpenHints(ctx, membership.Member{Name: "n1", ID: 1, PeerAddr: lis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(3, watch.Interest{Keys: []string{"k"}, Prefixes: []string{"p/"}}, watch.Interest{}); err != nil {
		t.Fatal(err)
	}
	b, err := st.Recv()
	if err != nil || b.Ack != 3 {
		t.Fatalf("first batch %+v, %v; want the ack of 3", b, err)
	}
	ballot := protocol.Ballot{Counter: 7, Proposer: 2}
	pub.Accepted("other", ballot, protocol.State{Value: []byte("no"), Version: 1})
	pub.Accepted("p/x", ballot, protocol.State{Version: 4, Deleted: true})
	var got []watch.Hint
	for len(got) < 1 {
		b, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b.Hints...)
	}
	if len(got) != 1 || got[0].Key != "p/x" || got[0].Ballot != ballot || !got[0].State.Equal(protocol.State{Version: 4, Deleted: true}) {
		t.Fatalf("hints %+v, want p/x's tombstone at %s", got, ballot)
	}
	s.Stop()
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
}
