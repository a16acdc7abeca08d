package clientapi

import (
	"context"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Backend runs operations for the client services; a node implements it.
type Backend interface {
	// Do runs op and returns the key's state after it (for OpGet: the
	// current state). Errors are those of package kv.
	Do(ctx context.Context, op kv.Op) (protocol.State, error)
	// Health returns nil when this node reaches a quorum of acceptors, and
	// otherwise an error saying what it cannot reach.
	Health(ctx context.Context) error
	// Members lists the cluster's members as this node sees them.
	Members(ctx context.Context) (Membership, error)
	// List runs one page of a listing (req checked by Validate; or, from
	// the node's own services, a prefix in the reserved space, which lists
	// that part of it: server/list): allow
	// says whether the caller may see a key (false: skipped, not
	// counted); emit takes each live key in key order. more: the page
	// stopped at its limit. Errors are those of package kv; an error
	// after some items were emitted ends the page there.
	List(ctx context.Context, req kv.ListRequest, allow func(key string) (bool, error), emit func(kv.ListItem) error) (more bool, err error)
}

// Membership is the cluster as one node sees it.
type Membership struct {
	ConfigVersion uint64 `json:"config_version"`
	// SelfID is the answering node's ID.
	SelfID  uint64   `json:"self_id,omitempty"`
	Members []Member `json:"members"`
	// Change is the membership change this node runs, if any.
	Change *MemberChange `json:"change,omitempty"`
}

// Member is one node of the cluster.
type Member struct {
	Name     string `json:"name"`
	ID       uint64 `json:"id"`
	PeerAddr string `json:"peer_addr"`
	// ClientAddr is where clients reach the member's client port: its
	// own answer to Admin.Info (this node's: its listener's), with the
	// peer address's host where the listener's is unspecified (0.0.0.0,
	// ::). Empty when the member was never reached since this node started.
	ClientAddr string `json:"client_addr,omitempty"`
	Reachable  bool   `json:"reachable"`
}
