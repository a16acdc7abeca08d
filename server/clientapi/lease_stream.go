package clientapi

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// errLeaseStreamDraining ends a keep-alive stream when the node stops
// (Unavailable): the client opens another, at another node.
var errLeaseStreamDraining = fmt.Errorf("%w: this node is stopping: keep leases alive through another", kv.ErrNoQuorum)

// LeaseKeepAlives serves the keep-alive stream: each request renews its
// lease as the unary LeaseKeepAlive does (the same operation, so the same
// change function, and the same permission check, per lease) and is
// answered by one response naming the lease: the lease after the renewal,
// or the error. A failed renewal ends nothing but itself.
//
// Renewals run concurrently, each within the request timeout and the
// node's admission bound; at most MaxBatchInflightOps of a stream run at
// once, and past that the stream is not read, so a client that sends
// faster than the node renews is held back by gRPC's flow control. The
// stream authenticates once, when it opens, as Batch does. It ends when
// the client closes its side (after every renewal taken is answered), the
// client goes away, or the node drains (Unavailable: renew elsewhere).
func (l *grpcLease) LeaseKeepAlives(s caspaxospb.Lease_LeaseKeepAlivesServer) error {
	ctx := s.Context()
	p, err := authenticate(ctx, l.g.cfg.Guard, GRPCCredentials(ctx))
	if err != nil {
		return statusOf(err)
	}
	reqs := make(chan uint64)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r.GetId():
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		running sync.WaitGroup
		sendMu  sync.Mutex
		sendErr error
	)
	slots := make(chan struct{}, l.g.cfg.MaxBatchInflightOps)
	for {
		var id uint64
		select {
		case id = <-reqs:
		case err := <-recvErr:
			running.Wait()
			if err == io.EOF {
				return sendErr
			}
			return err
		case <-l.g.draining:
			running.Wait()
			return statusOf(errLeaseStreamDraining)
		case <-ctx.Done():
			running.Wait()
			return ctx.Err()
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			running.Wait()
			return ctx.Err()
		}
		running.Add(1)
		go func() {
			defer running.Done()
			out := l.renew(ctx, p, id)
			<-slots
			sendMu.Lock()
			defer sendMu.Unlock()
			if sendErr == nil {
				sendErr = s.Send(out)
			}
		}()
	}
}

// renew renews lease id for p and answers it, the error included.
func (l *grpcLease) renew(ctx context.Context, p auth.Principal, id uint64) *caspaxospb.LeaseKeepAliveResponse {
	ctx, cancel := context.WithTimeout(ctx, l.g.timeout(0))
	defer cancel()
	out := &caspaxospb.LeaseKeepAliveResponse{Id: id}
	err := l.g.cfg.Admission.admit()
	if err == nil {
		out.Lease, err = l.exec(ctx, p, kv.Op{Kind: kv.OpLeaseKeepAlive, Key: kv.LeaseKey(id)}, auth.PermWrite)
		l.g.cfg.Admission.release()
	}
	if err != nil {
		c, current := classify(err)
		out.Error = &caspaxospb.ErrorInfo{Code: c.code, CurrentVersion: current}
		out.Message = err.Error()
	}
	return out
}
