package watch

import (
	"context"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
)

// Source opens hint streams to acceptors: the peer port's Watch service
// for other nodes (server/peerapi), a Publisher directly for this node's
// own acceptor and in tests (Local).
type Source interface {
	Open(ctx context.Context, id protocol.NodeID) (Stream, error)
}

// Stream is one open hint stream. Send and Recv may be called from two
// goroutines at once, but Send only from one. ctx of Open bounds it: the
// stream ends when ctx does.
type Stream interface {
	// Send asks for an interest change numbered seq; a later Batch acks it.
	Send(seq uint64, add, remove Interest) error
	// Recv waits for the next batch; an error ends the stream.
	Recv() (Batch, error)
}

// Local reaches Publishers in this process by acceptor ID.
type Local map[protocol.NodeID]*Publisher

// Open implements Source.
func (l Local) Open(ctx context.Context, id protocol.NodeID) (Stream, error) {
	p, ok := l[id]
	if !ok {
		return nil, fmt.Errorf("caspaxos/watch: no acceptor %d here", id)
	}
	return &localStream{ctx: ctx, sub: p.Subscribe()}, nil
}

type localStream struct {
	ctx context.Context
	sub *Subscription
}

func (s *localStream) Send(seq uint64, add, remove Interest) error {
	return s.sub.Change(seq, add, remove)
}

func (s *localStream) Recv() (Batch, error) {
	b, err := s.sub.Next(s.ctx)
	if err != nil {
		s.sub.Close()
	}
	return b, err
}

// Serve runs one hint stream of sub: it applies what recv returns (the
// watching node's interest changes) and sends every batch through send,
// until either fails or ctx ends. The peer port's Watch service calls it.
func Serve(ctx context.Context, sub *Subscription, recv func() (seq uint64, add, remove Interest, err error), send func(Batch) error) error {
	defer sub.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for {
			seq, add, remove, err := recv()
			if err == nil {
				err = sub.Change(seq, add, remove)
			}
			if err != nil {
				errc <- err
				cancel()
				return
			}
		}
	}()
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			select {
			case rerr := <-errc:
				return rerr
			default:
				return err
			}
		}
		if err := send(b); err != nil {
			return err
		}
	}
}
