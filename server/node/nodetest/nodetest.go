// Package nodetest starts clusters of nodes on an in-process network for
// the tests of the server's packages. Only tests import it.
package nodetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/proposer"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

// Cluster is n nodes on a Local network, each with an in-memory store.
type Cluster struct {
	Net    *node.Local
	Nodes  []*node.Node
	Stores []*storage.Memory
}

// FastConfig is a node configuration with short timeouts, for tests.
func FastConfig(id protocol.NodeID, acceptors protocol.Config) node.Config {
	return node.Config{
		ID:        id,
		Acceptors: acceptors,
		Proposer: proposer.Config{
			AttemptTimeout: 30 * time.Millisecond,
			ReadTimeout:    20 * time.Millisecond,
			BackoffBase:    time.Millisecond,
			BackoffMax:     5 * time.Millisecond,
			RandSeed:       uint64(id),
		},
	}
}

// New starts n nodes, IDs 1..n, each an acceptor, on one Local network,
// and stops them with the test.
func New(t *testing.T, n int) *Cluster {
	t.Helper()
	ids := make([]protocol.NodeID, n)
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	acceptors := protocol.Majority(1, ids...)
	c := &Cluster{Net: node.NewLocal()}
	for _, id := range ids {
		st := storage.NewMemory()
		ep := c.Net.Endpoint(id)
		n, err := node.New(FastConfig(id, acceptors), st, ep, ep, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Net.Add(n); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
		c.Stores = append(c.Stores, st)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Stop()
		}
	})
	return c
}

// Node returns the node with ID id.
func (c *Cluster) Node(id protocol.NodeID) *node.Node { return c.Nodes[id-1] }

// KeyHomedAt returns a key whose home is id.
func KeyHomedAt(t *testing.T, id protocol.NodeID, members []protocol.NodeID) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("key-%d", i)
		if server.Home(k, members) == id {
			return k
		}
	}
	t.Fatalf("no key homed at %d", id)
	return ""
}

// Restart stops every node and starts it again on its store, on a new
// network.
func (c *Cluster) Restart(t *testing.T) {
	t.Helper()
	for _, n := range c.Nodes {
		n.Stop()
	}
	ids := make([]protocol.NodeID, len(c.Nodes))
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	c.Net = node.NewLocal()
	for i, id := range ids {
		ep := c.Net.Endpoint(id)
		n, err := node.New(FastConfig(id, protocol.Majority(1, ids...)), c.Stores[i], ep, ep, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Net.Add(n); err != nil {
			t.Fatal(err)
		}
		c.Nodes[i] = n
	}
}
