package identity

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// NodeID derives a node ID from a name, so that every node agrees on IDs
// without coordination and a name keeps its ID across restarts. A joined
// node's name for it is its name and its directory's incarnation
// (dataIdentity.id).
func NodeID(name string) protocol.NodeID {
	h := fnv.New64a()
	h.Write([]byte(name))
	id := h.Sum64() &^ (1 << 63) // keep IDs readable as int64 in JSON tools
	if id == 0 {
		id = 1
	}
	return protocol.NodeID(id)
}

// dataIdentity is the IDENTITY state file: whose data directory this is.
type dataIdentity struct {
	Name        string `json:"name"`
	Incarnation string `json:"incarnation"`
	// Joined: the node was started with --join in this directory, so its
	// ID is of its name and incarnation; else of its name alone.
	Joined bool `json:"joined"`
}

// id returns the node ID of the directory's node.
func (i dataIdentity) id() protocol.NodeID {
	if i.Joined {
		return NodeID(i.Name + "#" + i.Incarnation)
	}
	return NodeID(i.Name)
}

// dirAge says what loadIdentity found in a data directory.
type dirAge int

const (
	dirKnown    dirAge = iota // IDENTITY was there
	dirNew                    // nothing: a new (or emptied) directory
	dirUpgraded               // the state of a release before IDENTITY
)

// loadIdentity returns the identity of the data directory dir for the node called
// name (started with --join: join), creating it at the directory's first
// start, and what it found.
func loadIdentity(dir *storage.Dir, name string, join bool) (dataIdentity, dirAge, error) {
	var ident dataIdentity
	b, err := dir.ReadState(storage.IdentityFile)
	if err != nil {
		return ident, dirKnown, err
	}
	if b != nil {
		if err := json.Unmarshal(b, &ident); err != nil {
			return ident, dirKnown, fmt.Errorf("caspaxos/identity: %s: %w", storage.IdentityFile, err)
		}
		if ident.Name != name || ident.Incarnation == "" {
			return ident, dirKnown, fmt.Errorf("caspaxos/identity: the data directory %s belongs to node %q (incarnation %q), not to %q",
				dir.Path(), ident.Name, ident.Incarnation, name)
		}
		return ident, dirKnown, nil
	}
	// Releases before IDENTITY kept a joined node's incarnation alone in
	// INCARNATION, nothing for a bootstrap node, and WAS-MEMBER in every
	// directory that had served (written at every start of a member).
	legacy, err := dir.ReadState(storage.IncarnationFile)
	if err != nil {
		return ident, dirKnown, err
	}
	was, err := dir.ReadState(storage.WasMemberFile)
	if err != nil {
		return ident, dirKnown, err
	}
	age := dirNew
	if legacy != nil || was != nil {
		age = dirUpgraded
	}
	ident = dataIdentity{Name: name, Incarnation: string(legacy), Joined: legacy != nil || join}
	if legacy == nil {
		r := make([]byte, 8)
		if _, err := rand.Read(r); err != nil {
			return ident, age, err
		}
		ident.Incarnation = hex.EncodeToString(r)
	}
	b, err = json.Marshal(ident)
	if err == nil {
		err = dir.WriteState(storage.IdentityFile, b)
	}
	return ident, age, err
}

// peerRecords is the PEERS state file: the incarnation of every member
// this node has heard from, and whether this node is sealed.
type peerRecords struct {
	Sealed       bool              `json:"sealed"`
	Incarnations map[string]string `json:"incarnations"` // by node ID, decimal
}

// peerBook is a node's peerRecords, kept durable.
type peerBook struct {
	dir *storage.Dir
	mu  sync.Mutex
	rec peerRecords
}

func loadPeerBook(dir *storage.Dir) (*peerBook, error) {
	p := &peerBook{dir: dir, rec: peerRecords{Incarnations: map[string]string{}}}
	b, err := dir.ReadState(storage.PeersFile)
	if err != nil || b == nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p.rec); err != nil {
		return nil, fmt.Errorf("caspaxos/identity: %s: %w", storage.PeersFile, err)
	}
	if p.rec.Incarnations == nil {
		p.rec.Incarnations = map[string]string{}
	}
	return p, nil
}

func (p *peerBook) sealed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.Sealed
}

// learn returns the incarnation recorded for id, recording inc (durably,
// before it returns) if there was none and inc is not empty.
func (p *peerBook) learn(id protocol.NodeID, inc string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := p.rec.Incarnations[idKey(id)]; k != "" || inc == "" {
		return k, nil
	}
	next := peerRecords{Sealed: p.rec.Sealed, Incarnations: make(map[string]string, len(p.rec.Incarnations)+1)}
	for k, v := range p.rec.Incarnations {
		next.Incarnations[k] = v
	}
	next.Incarnations[idKey(id)] = inc
	if err := p.save(next); err != nil {
		return "", err
	}
	return inc, nil
}

// seal records that every member confirmed this node's incarnation.
func (p *peerBook) seal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := p.rec
	next.Sealed = true
	return p.save(next)
}

// save persists rec and makes it the book's; p.mu is held.
func (p *peerBook) save(rec peerRecords) error {
	b, err := json.Marshal(rec)
	if err == nil {
		err = p.dir.WriteState(storage.PeersFile, b)
	}
	if err != nil {
		return fmt.Errorf("caspaxos/identity: recording a member's incarnation: %w", err)
	}
	p.rec = rec
	return nil
}

func idKey(id protocol.NodeID) string { return strconv.FormatUint(uint64(id), 10) }
