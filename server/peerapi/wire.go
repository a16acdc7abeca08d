package peerapi

import (
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// ballotToWire converts a ballot into its wire form.
func ballotToWire(b protocol.Ballot) *peerpb.Ballot {
	return &peerpb.Ballot{Counter: b.Counter, Proposer: uint64(b.Proposer)}
}

// ballotFromWire converts a ballot back; nil is the zero ballot.
func ballotFromWire(b *peerpb.Ballot) protocol.Ballot {
	return protocol.Ballot{Counter: b.GetCounter(), Proposer: protocol.NodeID(b.GetProposer())}
}

// agesToWire converts GC age fences, keyed by node ID, into their wire form.
func agesToWire(ages map[protocol.NodeID]uint64) map[uint64]uint64 {
	out := make(map[uint64]uint64, len(ages))
	for id, age := range ages {
		out[uint64(id)] = age
	}
	return out
}

// agesFromWire converts age fences back.
func agesFromWire(ages map[uint64]uint64) map[protocol.NodeID]uint64 {
	out := make(map[protocol.NodeID]uint64, len(ages))
	for id, age := range ages {
		out[protocol.NodeID(id)] = age
	}
	return out
}

func tombstonesToWire(tombs []protocol.Tombstone) []*peerpb.Tombstone {
	out := make([]*peerpb.Tombstone, len(tombs))
	for i, t := range tombs {
		out[i] = &peerpb.Tombstone{Key: []byte(t.Key), Ballot: ballotToWire(t.Ballot), Version: t.Version,
			Promise: ballotToWire(t.Promise)}
	}
	return out
}

func tombstonesFromWire(tombs []*peerpb.Tombstone) []protocol.Tombstone {
	out := make([]protocol.Tombstone, len(tombs))
	for i, t := range tombs {
		out[i] = protocol.Tombstone{Key: string(t.GetKey()), Ballot: ballotFromWire(t.GetBallot()), Version: t.GetVersion(),
			Promise: ballotFromWire(t.GetPromise())}
	}
	return out
}
