package daemon

import (
	"context"
	"fmt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/list"
)

// listAcceptors reaches the acceptors for a listing (list.Acceptors): this
// node's store directly, the others' through the peer port's Admin.
type listAcceptors struct{ d *Daemon }

func (a listAcceptors) Scan(ctx context.Context, id protocol.NodeID, r list.Range) (protocol.ListReply, error) {
	if id == a.d.id {
		// This node's store answers as a peer's would (adminNode), refusing
		// while its identity is unconfirmed.
		return adminNode{a.d}.ScanRegisters(ctx, r)
	}
	m, ok := a.d.members.Membership().Node(id)
	if !ok {
		return protocol.ListReply{}, fmt.Errorf("caspaxos/daemon: acceptor %d is not in the membership", id)
	}
	return a.d.admin.ScanRegisters(ctx, m, r)
}

// newLister builds the node's listings over its membership's accept set.
// A Config built without DefaultConfig (a zero List) takes list's defaults.
func (d *Daemon) newLister() (*list.Lister, error) {
	cfg := d.cfg.List
	if cfg == (list.Config{}) {
		cfg = list.DefaultConfig()
	}
	return list.New(cfg, d.members.Config, listAcceptors{d}, d.get)
}

// get reads key linearizably: what a listing reads where its replies
// disagree and what a watch confirms a hint with.
func (d *Daemon) get(ctx context.Context, key string) (protocol.State, error) {
	return d.node.Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
}

// List runs one page of a listing (clientapi.Backend). Like Do, a node
// that knows it cannot reach a quorum answers kv.ErrNoQuorum at once.
func (d *Daemon) List(ctx context.Context, req kv.ListRequest, allow func(string) (bool, error), emit func(kv.ListItem) error) (bool, error) {
	if err := d.Health(ctx); err != nil {
		return false, fmt.Errorf("%w: %v", kv.ErrNoQuorum, err)
	}
	return d.lister.List(ctx, req, allow, emit)
}

// ScanRegisters implements peerapi.Admin.
func (a adminNode) ScanRegisters(ctx context.Context, r list.Range) (protocol.ListReply, error) {
	if err := a.d.checkServing(); err != nil {
		return protocol.ListReply{}, err
	}
	return list.ScanSettled(ctx, a.d.store, a.d.node.Acceptor().Settle, r)
}
