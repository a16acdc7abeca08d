package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
)

// distantForwarder reports a fixed RTT per node; it forwards nothing.
type distantForwarder struct {
	rtt map[protocol.NodeID]time.Duration
}

func (f distantForwarder) Forward(context.Context, protocol.NodeID, server.Request) (protocol.State, error) {
	return protocol.State{}, server.ErrUnreachable
}

func (f distantForwarder) RTT(id protocol.NodeID) (time.Duration, bool) {
	d, ok := f.rtt[id]
	return d, ok
}

func TestNear(t *testing.T) {
	f := distantForwarder{rtt: map[protocol.NodeID]time.Duration{2: 300 * time.Microsecond, 3: 22 * time.Millisecond}}
	for _, c := range []struct {
		fwd  server.Forwarder
		home protocol.NodeID
		want bool
	}{
		{f, 2, true},  // LAN: forward
		{f, 3, false}, // another region: propose here
		{f, 4, true},  // not measured yet: forward
		{distantForwarder{}.forwardOnly(), 3, true}, // no distances known: forward
	} {
		if got := node.Near(c.fwd, c.home); got != c.want {
			t.Errorf("near(home %d) = %v, want %v", c.home, got, c.want)
		}
	}
}

// forwardOnly hides RTT: a server.Forwarder that cannot tell distances.
func (f distantForwarder) forwardOnly() server.Forwarder {
	return struct{ server.Forwarder }{f}
}
