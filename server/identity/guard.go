package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/storage"
)

const (
	// sealRetry is how often a node that is not sealed asks the members it
	// has not heard from yet.
	sealRetry = 200 * time.Millisecond
	// sealCallTimeout bounds one Admin.Info call of the seal.
	sealCallTimeout = time.Second
)

// ErrRefused wraps every refusal of the seal: the node must not serve.
var ErrRefused = errors.New("caspaxos/identity: this data directory is not the one the cluster knows")

// Config names the node whose data directory a Guard guards.
type Config struct {
	// Name is the node's name.
	Name string
	// Join: the node was started with --join. A directory first started
	// so gives the node an ID of its name and incarnation.
	Join bool
	// DataDir and PeerAddr are named in a refusal's advice: how to bring
	// the node back under a new identity.
	DataDir  string
	PeerAddr string
}

// Peers asks a member about itself (the Admin service's Info;
// *peerapi.AdminClients is one).
type Peers interface {
	// Info asks member to about itself, as caller of incarnation (which it
	// records if it lists caller and knows none). Over TLS, only a node
	// whose certificate names the member answers.
	Info(ctx context.Context, to membership.Member, caller protocol.NodeID, incarnation string) (membership.PeerInfo, error)
}

// Guard is the amnesia guard of one node (see the package documentation):
// its data directory's identity, the incarnations of the members it heard
// from, and the gate that opens once the cluster confirmed the directory.
type Guard struct {
	cfg     Config
	ident   dataIdentity
	age     dirAge
	book    *peerBook
	wait    sealWait
	peers   Peers
	members func() membership.Membership
	fatal   func(error)
	log     *slog.Logger

	mu      sync.Mutex // orders open with Stop
	serve   func()
	closed  bool
	serving atomic.Bool
	cancel  context.CancelFunc // ends the seal loop; nil if none runs
	done    chan struct{}      // closed when the seal loop ended
}

// New reads the identity of the data directory dir (making it at the
// directory's first start) and the members' incarnations it recorded. A
// damaged state file is an error. The Guard asks members through peers,
// reads the membership in use from members, and stops the node for good
// through fatal when a member refuses it; members and fatal are called
// from Start on only, so that they may reach parts built after the Guard.
func New(cfg Config, dir *storage.Dir, peers Peers, members func() membership.Membership, fatal func(error), log *slog.Logger) (*Guard, error) {
	ident, age, err := loadIdentity(dir, cfg.Name, cfg.Join)
	if err != nil {
		return nil, err
	}
	book, err := loadPeerBook(dir)
	if err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg, ident: ident, age: age, book: book, peers: peers, members: members, fatal: fatal, log: log}, nil
}

// ID is the node's ID: of its name, or, for a directory first started with
// --join, of its name and incarnation.
func (g *Guard) ID() protocol.NodeID { return g.ident.id() }

// Incarnation is the data directory's incarnation.
func (g *Guard) Incarnation() string { return g.ident.Incarnation }

// Start opens the gate, calling serve, at once on a node whose identity
// the cluster knows (joined, sealed, or not a member yet) or whose
// directory predates identities; else it asks the members in the
// background and opens the gate once every one confirmed this directory.
// serve opens the node to its peers and clients; it is called at most
// once, never after Stop began.
func (g *Guard) Start(serve func()) {
	g.mu.Lock()
	g.serve = serve
	closed := g.closed
	g.mu.Unlock()
	switch {
	case closed:
	case g.ident.Joined || g.book.sealed() || g.members().Version() == 0:
		g.open()
	default:
		if g.age == dirUpgraded {
			g.open() // its state is there; it seals meanwhile
		}
		g.wait.set([]string{"the first answers"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.mu.Lock()
		g.cancel, g.done = cancel, done
		g.mu.Unlock()
		go func() {
			defer close(done)
			g.sealLoop(ctx)
		}()
	}
}

// Stop closes the gate for good (a node that did not serve yet never
// will) and ends the seal loop.
func (g *Guard) Stop() {
	g.mu.Lock()
	g.closed = true
	cancel, done := g.cancel, g.done
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// open opens the gate unless it is open or Stop began.
func (g *Guard) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.serving.Load() {
		return
	}
	g.serve()
	g.serving.Store(true)
}

// Serving reports whether the gate is open: the node answers its peers
// and clients.
func (g *Guard) Serving() bool { return g.serving.Load() }

// Err is nil once the node serves; before, it says whom the node waits
// for. What a node that does not serve must refuse (Health, a membership
// from a change, a catch-up's key list) it refuses with Err.
func (g *Guard) Err() error {
	if g.serving.Load() {
		return nil
	}
	return g.wait.err()
}

// Sealed reports whether every member confirmed this directory's
// identity (recorded in PEERS).
func (g *Guard) Sealed() bool { return g.book.sealed() }

// Learn returns the incarnation this node knows the member caller by,
// recording inc durably, before it returns, if it knew none and inc is
// not empty (step 1 of the package documentation: the caller may seal on
// the answer). The caller must be listed by the membership in use.
func (g *Guard) Learn(caller protocol.NodeID, inc string) (string, error) {
	return g.book.learn(caller, inc)
}

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
// incarnation, then seals the node and opens the gate; it stops the node
// (fatal) if one refuses it, and ends with ctx.
func (g *Guard) sealLoop(ctx context.Context) {
	confirmed := map[protocol.NodeID]bool{}
	t := time.NewTicker(sealRetry)
	defer t.Stop()
	for {
		ms := g.members()
		var waiting []string
		for _, m := range ms.Nodes {
			if m.ID == g.ID() || confirmed[m.ID] {
				continue
			}
			ok, err := g.confirm(ctx, ms, m)
			if err != nil {
				g.fatal(err)
				return
			}
			if ok {
				confirmed[m.ID] = true
			} else {
				waiting = append(waiting, m.Name)
			}
		}
		g.wait.set(waiting)
		if len(waiting) == 0 {
			if err := g.book.seal(); err != nil {
				g.fatal(err)
				return
			}
			g.log.Info("every member confirmed this data directory's identity; serving", "incarnation", g.ident.Incarnation)
			g.open()
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
// wrapping ErrRefused when m refuses this node.
func (g *Guard) confirm(ctx context.Context, ms membership.Membership, m membership.Member) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, sealCallTimeout)
	defer cancel()
	r, err := g.peers.Info(cctx, m, g.ID(), g.ident.Incarnation)
	if err != nil || r.ID != m.ID {
		return false, nil // down, or another node at its address: ask again
	}
	if ok, err := g.judge(ms, m, r); !ok || err != nil {
		return false, err
	}
	if k, err := g.book.learn(m.ID, r.Incarnation); err != nil {
		return false, err
	} else if k != r.Incarnation {
		g.log.Warn("a member answers with another data directory than the one this node knows it by; it must be removed and added again",
			"member", m.Name, "known_incarnation", k, "incarnation", r.Incarnation)
		return false, nil
	}
	return true, nil
}

// judge says what member m's answer r means to this node, which uses
// membership ms: true if m lists this node, knows it by this incarnation
// and says its own (confirm then records it), false if m cannot say yet
// (it predates incarnations), an error wrapping ErrRefused if m refuses
// this node.
func (g *Guard) judge(ms membership.Membership, m membership.Member, r membership.PeerInfo) (bool, error) {
	name, inc := g.cfg.Name, g.ident.Incarnation
	fix := fmt.Sprintf("to bring this node back, run `caspaxos members remove %s` against a running member, empty this node's data directory (%s), start it with --join and run `caspaxos members add %s=%s`",
		name, g.cfg.DataDir, name, g.cfg.PeerAddr)
	switch known := r.CallerIncarnation; {
	case r.CallerListed != nil && !*r.CallerListed:
		return false, fmt.Errorf("%w: member %s uses membership version %d, which does not list %s (it was removed, or this directory was started with another cluster's --cluster); %s",
			ErrRefused, m.Name, r.Version, name, fix)
	case known != "" && known != inc:
		return false, fmt.Errorf("%w: member %s knows %s by incarnation %s, and this data directory is incarnation %s: it was emptied, replaced or restored since %s last served, and serving under that identity could lose acknowledged writes; %s",
			ErrRefused, m.Name, name, known, inc, name, fix)
	case g.age == dirNew && r.Version > ms.Version():
		return false, fmt.Errorf("%w: member %s uses membership version %d, and this node started on a new data directory from --cluster (version %d): the cluster has moved past its bootstrap membership, whose quorums may not meet the current ones; %s",
			ErrRefused, m.Name, r.Version, ms.Version(), fix)
	case known == "" || r.Incarnation == "":
		return false, nil // it predates incarnations: ask again
	}
	return true, nil
}
