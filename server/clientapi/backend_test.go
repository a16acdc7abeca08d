package clientapi

import (
	"context"
	"errors"
	"sync"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// mapBackend runs operations on a map with the real change functions, so the
// handlers are tested against the store's semantics; fail, if set, is
// returned instead for every operation.
type mapBackend struct {
	mu   sync.Mutex
	m    map[string]protocol.State
	fail error
}

func newMapBackend() *mapBackend { return &mapBackend{m: make(map[string]protocol.State)} }

func (b *mapBackend) Do(_ context.Context, op kv.Op) (protocol.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return protocol.State{}, b.fail
	}
	cur := b.m[op.Key]
	ch := op.Change()
	if ch == nil {
		return cur, nil
	}
	w, err := ch(cur)
	if err != nil {
		return cur, err
	}
	switch w.Kind {
	case protocol.WriteSet:
		cur = protocol.State{Value: w.Value, Version: cur.Version + 1}
	case protocol.WriteDelete:
		cur = protocol.State{Version: cur.Version + 1, Deleted: true}
	}
	b.m[op.Key] = cur
	return cur, nil
}

func (b *mapBackend) Health(context.Context) error {
	if b.fail != nil {
		return errors.New("2 of 3 acceptors unreachable")
	}
	return nil
}

func (b *mapBackend) Members(context.Context) (Membership, error) {
	return Membership{ConfigVersion: 1, Members: []Member{{Name: "n1", ID: 1, PeerAddr: "127.0.0.1:7080", Reachable: true}}}, nil
}
