package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/storage"
)

// A data directory's identity, and why a node that lost its own never
// serves under it again.
//
// An acceptor's promises and accepted values are what makes a chosen value
// chosen (PROTOCOL.md §3): a node that comes back with an empty data
// directory under the ID it had, and answers as an acceptor, lets a quorum
// form that does not hold a value the cluster acknowledged. Three nodes
// n1..n3: a write acknowledged by n1 and n2 is lost once n1 comes back
// empty and answers with n3. A re-created container without its volume, a
// replaced disk or a restored old copy of the directory all do this.
//
// So every data directory has an incarnation, a random name made at its
// first start (IDENTITY). Nodes added with --join already have an ID of
// their name and incarnation (a new disk is a new node). Nodes of the
// bootstrap cluster keep the ID of their name, which --cluster gives every
// node up front, and the cluster remembers their incarnation instead:
//
//  1. Every node keeps, in PEERS, the incarnation of every member it has
//     heard from, by node ID. A node whose membership lists the caller of
//     Admin.Info and knows no incarnation of it records the caller's,
//     durably, before it answers; the answer says which incarnation it
//     knows the caller by.
//  2. A bootstrap node does not serve (it answers no protocol message,
//     runs no client operation and no forward) until it has heard from
//     every other member of its membership, each of which answered that it
//     lists the node and knows it by this incarnation. It then records
//     that (PEERS, sealed) and serves from then on, also after restarts,
//     without asking again.
//  3. A node that finds a member knowing it by another incarnation, or not
//     listing it, or (a new directory) using a newer membership than the
//     bootstrap one, stops with an error that says what to do: remove it,
//     start it with --join on an empty directory, add it.
//
// Why this is enough: a node answers as an acceptor only once sealed, and
// by then every other member has recorded its incarnation (step 1 happens
// before the answer that let it seal). A directory that lost its state
// makes a new incarnation; to serve it would need every other member's
// word again, and any member that recorded the old incarnation, that is
// any member still holding its own state, refuses. Requiring every member
// (not a quorum) is what makes this hold for any quorum sizes: with three
// nodes, the one other node a write shared may be the only one to know.
// The price: a brand-new cluster serves once all its bootstrap members
// have started; a restart of a sealed node asks nobody.
//
// A directory of a release before IDENTITY (it has WAS-MEMBER, which every
// member wrote at each start) holds its state: it gets an incarnation and
// serves at once, sealing in the background as its peers are upgraded, so
// that a rolling upgrade never takes a quorum out. Until sealed, its
// amnesia would go unseen, as it did before.
//
// A node that is not sealed takes no membership (Admin.SetState) and lists
// no keys (Admin.ScanKeys): members added after the bootstrap never learnt
// the incarnations of the bootstrap members, so an emptied bootstrap
// member handed the current membership by a change would seal against
// them (a reviewer's finding), and an emptied store's empty key list would
// count in a catch-up.
//
// Not covered: a directory restored from an old copy of itself keeps its
// incarnation, and every node of a cluster losing its state at once is a
// new cluster.
const (
	// sealRetry is how often a node that is not sealed asks the members it
	// has not heard from yet.
	sealRetry = 200 * time.Millisecond
	// sealCallTimeout bounds one Admin.Info call of the seal.
	sealCallTimeout = time.Second
)

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

// loadIdentity returns the identity of the data directory dir, creating it
// at the directory's first start, and what it found.
func loadIdentity(cfg Config, dir *storage.Dir) (dataIdentity, dirAge, error) {
	var ident dataIdentity
	b, err := dir.ReadState(storage.IdentityFile)
	if err != nil {
		return ident, dirKnown, err
	}
	if b != nil {
		if err := json.Unmarshal(b, &ident); err != nil {
			return ident, dirKnown, fmt.Errorf("caspaxos/daemon: %s: %w", storage.IdentityFile, err)
		}
		if ident.Name != cfg.Name || ident.Incarnation == "" {
			return ident, dirKnown, fmt.Errorf("caspaxos/daemon: the data directory %s belongs to node %q (incarnation %q), not to %q",
				dir.Path(), ident.Name, ident.Incarnation, cfg.Name)
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
	ident = dataIdentity{Name: cfg.Name, Incarnation: string(legacy), Joined: legacy != nil || cfg.Join}
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
		return nil, fmt.Errorf("caspaxos/daemon: %s: %w", storage.PeersFile, err)
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

// known returns the incarnation recorded for id, "" if none.
func (p *peerBook) known(id protocol.NodeID) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.Incarnations[idKey(id)]
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
		return fmt.Errorf("caspaxos/daemon: recording a member's incarnation: %w", err)
	}
	p.rec = rec
	return nil
}

func idKey(id protocol.NodeID) string { return strconv.FormatUint(uint64(id), 10) }

// errIdentity wraps every refusal of the seal: the node must not serve.
var errIdentity = fmt.Errorf("caspaxos/daemon: this data directory is not the one the cluster knows")

// sealWait is what a node that is not sealed waits for, for Health.
type sealWait struct {
	mu      sync.Mutex
	waiting []string // the members not heard from yet, by name
}

func (w *sealWait) set(names []string) {
	w.mu.Lock()
	w.waiting = names
	w.mu.Unlock()
}

func (w *sealWait) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Errorf("this node is confirming its data directory's identity with the other members and serves once each has answered (waiting for %s)",
		strings.Join(w.waiting, ", "))
}

// sealLoop asks the members until every one confirmed this node's
// incarnation, then seals the node and starts serving; it stops the node
// (Fatal) if one refuses it, and ends with ctx.
func (d *Daemon) sealLoop(ctx context.Context) {
	confirmed := map[protocol.NodeID]bool{}
	t := time.NewTicker(sealRetry)
	defer t.Stop()
	for {
		st := d.members.State()
		var waiting []string
		for _, m := range st.Membership.Nodes {
			if m.ID == d.id || confirmed[m.ID] {
				continue
			}
			ok, err := d.confirm(ctx, st.Membership, m)
			if err != nil {
				d.stopFatal(err)
				return
			}
			if ok {
				confirmed[m.ID] = true
			} else {
				waiting = append(waiting, m.Name)
			}
		}
		d.sealWait.set(waiting)
		if len(waiting) == 0 {
			if err := d.book.seal(); err != nil {
				d.stopFatal(err)
				return
			}
			d.log.Info("every member confirmed this data directory's identity; serving", "incarnation", d.ident.Incarnation)
			d.startServing()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// confirm asks member m whether it knows this node by its incarnation. It
// returns false (ask again later) when m cannot say yet, and an error
// wrapping errIdentity when m refuses this node.
func (d *Daemon) confirm(ctx context.Context, ms membership.Membership, m membership.Member) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, sealCallTimeout)
	defer cancel()
	r, err := d.admin.Info(cctx, m.PeerAddr, d.id, d.ident.Incarnation)
	if err != nil || r.ID != m.ID {
		return false, nil // down, or another node at its address: ask again
	}
	fix := fmt.Sprintf("to bring this node back, run `caspaxos members remove %s` against a running member, empty this node's data directory (%s), start it with --join and run `caspaxos members add %s=%s`",
		d.cfg.Name, d.cfg.DataDir, d.cfg.Name, d.cfg.PeerAddr)
	switch known := r.CallerIncarnation; {
	case r.CallerListed != nil && !*r.CallerListed:
		return false, fmt.Errorf("%w: member %s uses membership version %d, which does not list %s (it was removed, or this directory was started with another cluster's --cluster); %s",
			errIdentity, m.Name, r.Version, d.cfg.Name, fix)
	case known != "" && known != d.ident.Incarnation:
		return false, fmt.Errorf("%w: member %s knows %s by incarnation %s, and this data directory is incarnation %s: it was emptied, replaced or restored since %s last served, and serving under that identity could lose acknowledged writes; %s",
			errIdentity, m.Name, d.cfg.Name, known, d.ident.Incarnation, d.cfg.Name, fix)
	case d.dirAge == dirNew && r.Version > ms.Version():
		return false, fmt.Errorf("%w: member %s uses membership version %d, and this node started on a new data directory from --cluster (version %d): the cluster has moved past its bootstrap membership, whose quorums may not meet the current ones; %s",
			errIdentity, m.Name, r.Version, ms.Version(), fix)
	case known == "" || r.Incarnation == "":
		return false, nil // it predates incarnations: ask again
	}
	if k, err := d.book.learn(m.ID, r.Incarnation); err != nil {
		return false, err
	} else if k != r.Incarnation {
		d.log.Warn("a member answers with another data directory than the one this node knows it by; it must be removed and added again",
			"member", m.Name, "known_incarnation", k, "incarnation", r.Incarnation)
		return false, nil
	}
	return true, nil
}
