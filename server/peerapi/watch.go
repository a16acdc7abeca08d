package peerapi

import (
	"context"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/watch"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// RegisterWatch serves the Watch service on s: the hint streams of this
// node's acceptor, from p (server/watch).
func RegisterWatch(s *grpc.Server, p *watch.Publisher) {
	peerpb.RegisterWatchServer(s, watchServer{p: p})
}

type watchServer struct {
	peerpb.UnimplementedWatchServer
	p *watch.Publisher
}

func (s watchServer) Hints(st grpc.BidiStreamingServer[peerpb.HintsRequest, peerpb.HintsReply]) error {
	recv := func() (uint64, watch.Interest, watch.Interest, error) {
		r, err := st.Recv()
		if err != nil {
			return 0, watch.Interest{}, watch.Interest{}, err
		}
		return r.GetSeq(), watch.Interest{Keys: strs(r.GetAddKeys()), Prefixes: strs(r.GetAddPrefixes())},
			watch.Interest{Keys: strs(r.GetRemoveKeys()), Prefixes: strs(r.GetRemovePrefixes())}, nil
	}
	send := func(b watch.Batch) error {
		out := &peerpb.HintsReply{Ack: b.Ack, Overflow: b.Overflow, Hints: make([]*peerpb.Hint, len(b.Hints))}
		for i, h := range b.Hints {
			out.Hints[i] = &peerpb.Hint{Key: []byte(h.Key), BallotCounter: h.Ballot.Counter, BallotProposer: uint64(h.Ballot.Proposer),
				Value: h.State.Value, Version: h.State.Version, Deleted: h.State.Deleted}
		}
		return st.Send(out)
	}
	return watch.Serve(st.Context(), s.p.Subscribe(), recv, send)
}

// OpenHints opens a hint stream to node to's acceptor (watch.Source, with
// the member looked up by the caller). The stream ends with ctx.
func (p *AdminClients) OpenHints(ctx context.Context, to membership.Member) (watch.Stream, error) {
	c, err := p.conn(to)
	if err != nil {
		return nil, err
	}
	// Not WaitForReady: a peer that is down must break the stream at
	// once, so that the watching node resyncs.
	st, err := peerpb.NewWatchClient(c).Hints(ctx, grpc.WaitForReady(false))
	if err != nil {
		return nil, err
	}
	return hintStream{st}, nil
}

type hintStream struct {
	st grpc.BidiStreamingClient[peerpb.HintsRequest, peerpb.HintsReply]
}

func (s hintStream) Send(seq uint64, add, remove watch.Interest) error {
	return s.st.Send(&peerpb.HintsRequest{Seq: seq, AddKeys: bytesOf(add.Keys), AddPrefixes: bytesOf(add.Prefixes),
		RemoveKeys: bytesOf(remove.Keys), RemovePrefixes: bytesOf(remove.Prefixes)})
}

func (s hintStream) Recv() (watch.Batch, error) {
	r, err := s.st.Recv()
	if err != nil {
		return watch.Batch{}, err
	}
	b := watch.Batch{Ack: r.GetAck(), Overflow: r.GetOverflow(), Hints: make([]watch.Hint, len(r.GetHints()))}
	for i, h := range r.GetHints() {
		b.Hints[i] = watch.Hint{Key: string(h.GetKey()),
			Ballot: protocol.Ballot{Counter: h.GetBallotCounter(), Proposer: protocol.NodeID(h.GetBallotProposer())},
			State:  protocol.State{Value: h.GetValue(), Version: h.GetVersion(), Deleted: h.GetDeleted()}}
	}
	return b, nil
}

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
