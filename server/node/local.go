package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// Local is the network of nodes that live in one process: the embeddable
// store's transport. Each node talks through its own Endpoint; a batch sent
// to a node is handed to its Deliver (which queues it), and a forwarded
// request is a direct call of the home node's Propose.
//
// A Hook lets tests cut links or drop, hold and reorder messages.
type Local struct {
	mu    sync.RWMutex
	nodes map[protocol.NodeID]*Node
	hook  Hook
}

// Hook interferes with a Local network, for tests. Nil fields do nothing.
// Both functions are called concurrently, from the sending goroutines.
type Hook struct {
	// Down reports whether the link from one node to another is cut: its
	// batches are dropped and forwards over it fail with server.ErrUnreachable.
	Down func(from, to protocol.NodeID) bool
	// Filter returns what to deliver now of a batch on a link (nil: none).
	// It may keep messages and deliver them later with Endpoint.Send.
	Filter func(from, to protocol.NodeID, msgs []protocol.Message) []protocol.Message
}

// NewLocal returns an empty in-process network.
func NewLocal() *Local {
	return &Local{nodes: make(map[protocol.NodeID]*Node)}
}

// Add connects n to the network. Messages sent to its ID before are lost.
func (l *Local) Add(n *Node) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.nodes[n.ID()]; dup {
		return fmt.Errorf("caspaxos/node: node %d is already on the network", n.ID())
	}
	l.nodes[n.ID()] = n
	return nil
}

// SetHook replaces the hook; the zero Hook removes it.
func (l *Local) SetHook(h Hook) {
	l.mu.Lock()
	l.hook = h
	l.mu.Unlock()
}

// Endpoint returns the server.Transport and server.Forwarder of node id on this network.
func (l *Local) Endpoint(id protocol.NodeID) *Endpoint {
	return &Endpoint{net: l, id: id}
}

func (l *Local) link(from, to protocol.NodeID) (*Node, Hook, error) {
	l.mu.RLock()
	n, h := l.nodes[to], l.hook
	l.mu.RUnlock()
	if n == nil {
		return nil, h, fmt.Errorf("%w: node %d is not on the network", server.ErrUnreachable, to)
	}
	if h.Down != nil && h.Down(from, to) {
		return nil, h, fmt.Errorf("%w: link %d->%d is down", server.ErrUnreachable, from, to)
	}
	return n, h, nil
}

// Endpoint is one node's access to a Local network.
type Endpoint struct {
	net *Local
	id  protocol.NodeID
}

var (
	_ server.Transport = (*Endpoint)(nil)
	_ server.Forwarder = (*Endpoint)(nil)
)

// Send implements server.Transport.
func (e *Endpoint) Send(to protocol.NodeID, msgs []protocol.Message) error {
	n, h, err := e.net.link(e.id, to)
	if err != nil {
		return err
	}
	if h.Filter != nil {
		msgs = h.Filter(e.id, to, msgs)
	}
	if len(msgs) > 0 {
		n.Deliver(msgs)
	}
	return nil
}

// Forward implements server.Forwarder: it runs req on node to's proposer.
func (e *Endpoint) Forward(ctx context.Context, to protocol.NodeID, req server.Request) (protocol.State, error) {
	n, _, err := e.net.link(e.id, to)
	if err != nil {
		return protocol.State{}, err
	}
	return n.Propose(ctx, req)
}
