package membership

import "github.com/caspaxos/caspaxos/protocol"

// PeerInfo is what a node tells a peer about itself when asked (the Admin
// service's Info): the removal probe and the hold probe read it here, the
// amnesia guard (server/identity) reads the incarnations.
type PeerInfo struct {
	Name        string
	ID          protocol.NodeID
	Version     uint64 // its membership's version
	Changing    bool   // a membership change holds it
	Incarnation string // its data directory's incarnation
	// CallerListed says whether its membership lists the caller (nil: the
	// caller did not say who it is).
	CallerListed *bool
	// CallerIncarnation is the caller's incarnation as this node knows it
	// ("" if it knows none).
	CallerIncarnation string
	// Controls says whether its controller stores a membership change
	// (nil: it could not read its store), ChangeID which.
	Controls *bool
	ChangeID string
	// ClientAddr is where clients reach its client port ("" from nodes
	// that predate it); the member listing shows it.
	ClientAddr string
}
