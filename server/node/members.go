package node

import (
	"slices"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/proposer"
)

// SetMembers replaces the nodes whose proposers share the keys by home
// routing (membership change adds and removes them at runtime).
func (n *Node) SetMembers(ids []protocol.NodeID) {
	m := slices.Clone(ids)
	n.members.Store(&m)
}

// Members returns the nodes of home routing.
func (n *Node) Members() []protocol.NodeID { return slices.Clone(*n.members.Load()) }

// Proposer returns the node's proposer driver (membership change sets its
// configuration and runs the catch-up through it).
func (n *Node) Proposer() *proposer.Proposer { return n.proposer }

// Acceptor returns the node's acceptor service.
func (n *Node) Acceptor() *acceptor.Acceptor { return n.acceptor }
