package transport

import (
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Deletion GC's calls (PROTOCOL.md §9, gc.proto) travel on the peer links'
// connections: a GC runner reaches exactly the peers the transport has,
// which follow membership changes (SetPeers).

// GC returns the GC service of peer id over its link's connection. It
// fails with ErrUnreachable, sending nothing, when id is not a peer or its
// link is down or silent: a GC round cannot finish without every node, and
// waiting for one that is down would only hold the round until its timeout.
func (t *Transport) GC(id protocol.NodeID) (peerpb.GCClient, error) {
	l := t.set().links[id]
	if l == nil {
		return nil, fmt.Errorf("%w: no link to node %d", ErrUnreachable, id)
	}
	if !t.Reachable(id) {
		return nil, fmt.Errorf("%w: node %d", ErrUnreachable, id)
	}
	return peerpb.NewGCClient(l.conn), nil
}
