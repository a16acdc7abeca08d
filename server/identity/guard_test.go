package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

type peerInfo = membership.PeerInfo

// threeNodes is the bootstrap membership n1, n2, n3 at version.
func threeNodes(version uint64) membership.Membership {
	var m membership.Membership
	var ids []protocol.NodeID
	for _, name := range []string{"n1", "n2", "n3"} {
		m.Nodes = append(m.Nodes, membership.Member{Name: name, ID: NodeID(name), PeerAddr: name + ":7080"})
		ids = append(ids, NodeID(name))
	}
	m.Config = protocol.Majority(version, ids...)
	return m
}

// fakeMember answers Info as a member does (step 1 of the package
// documentation): it records a listed caller's first incarnation.
type fakeMember struct {
	id    protocol.NodeID
	inc   string
	down  bool
	knows map[protocol.NodeID]string
}

// fakePeers are the other members, by peer address.
type fakePeers struct {
	mu      sync.Mutex
	members map[string]*fakeMember
	calls   int
}

func newFakePeers(ms membership.Membership) *fakePeers {
	p := &fakePeers{members: map[string]*fakeMember{}}
	for _, m := range ms.Nodes {
		p.members[m.PeerAddr] = &fakeMember{id: m.ID, inc: "inc-" + m.Name, knows: map[protocol.NodeID]string{}}
	}
	return p
}

func (p *fakePeers) Info(_ context.Context, to membership.Member, caller protocol.NodeID, inc string) (peerInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	m := p.members[to.PeerAddr]
	if m == nil || m.down {
		return peerInfo{}, errors.New("connection refused")
	}
	listed := true
	if m.knows[caller] == "" {
		m.knows[caller] = inc
	}
	return peerInfo{ID: m.id, Version: 1, Incarnation: m.inc, CallerListed: &listed, CallerIncarnation: m.knows[caller]}, nil
}

func (p *fakePeers) knows(addr string, id protocol.NodeID) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.members[addr].knows[id]
}

// Start opens the gate at once on a node the cluster knows, else once every
// other member confirmed its directory; a member that knows another
// directory stops it for good; Stop closes the gate.
func TestGuardStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		join    bool
		version uint64                               // of the membership in use; 0: not a member yet
		setup   func(t *testing.T, dir *storage.Dir) // the directory before New
		peers   func(p *fakePeers)                   // the other members' state
		stop    bool                                 // Stop before Start
		atOnce  bool                                 // serving when Start returns
		outcome string                               // "served", "sealed" (served at once, sealed later), "waits", "refused", "closed"
		refused string                               // a part of the refusal
	}{
		{name: "joined: at once", join: true, version: 1, peers: allDown, atOnce: true, outcome: "served"},
		{name: "not a member yet: at once", version: 0, peers: allDown, atOnce: true, outcome: "served"},
		{name: "sealed: at once, asking nobody", version: 1, setup: func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.PeersFile, `{"sealed":true,"incarnations":{}}`)
		}, peers: allDown, atOnce: true, outcome: "served"},
		{name: "a new bootstrap node: once every member confirmed", version: 1, outcome: "sealed"},
		{name: "a member down: it waits", version: 1, peers: func(p *fakePeers) { p.members["n3:7080"].down = true }, outcome: "waits"},
		{name: "a member knows another directory: stopped", version: 1, peers: func(p *fakePeers) {
			p.members["n3:7080"].knows[NodeID("n1")] = "a-lost-one"
		}, outcome: "refused", refused: "knows n1 by incarnation a-lost-one"},
		{name: "a directory of a release before IDENTITY: at once, sealed later", version: 1, setup: func(t *testing.T, dir *storage.Dir) {
			write(t, dir, storage.WasMemberFile, "1\n")
		}, atOnce: true, outcome: "sealed"},
		{name: "stopped before it started: never", join: true, version: 1, stop: true, outcome: "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			ms := threeNodes(tc.version)
			peers := newFakePeers(ms)
			if tc.peers != nil {
				tc.peers(peers)
			}
			fatal := make(chan error, 1)
			g, err := New(Config{Name: "n1", Join: tc.join, DataDir: "/data/n1", PeerAddr: "n1:7080"}, dir, peers,
				func() membership.Membership { return ms }, func(err error) { fatal <- err }, servertest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Stop)
			if tc.stop {
				g.Stop()
			}
			served := make(chan struct{})
			g.Start(func() { close(served) }) // a second call would panic
			if g.Serving() != tc.atOnce || (g.Err() == nil) != tc.atOnce {
				t.Fatalf("serving %v (Err %v) when Start returned, want %v", g.Serving(), g.Err(), tc.atOnce)
			}
			switch tc.outcome {
			case "served":
				peers.mu.Lock()
				calls := peers.calls
				peers.mu.Unlock()
				if calls != 0 {
					t.Fatalf("asked the members %d times", calls)
				}
			case "sealed":
				servertest.WaitFor(t, "the seal", g.Sealed)
				waitClosed(t, served)
				for _, m := range ms.Nodes[1:] {
					if got := peers.knows(m.PeerAddr, g.ID()); got != g.Incarnation() {
						t.Fatalf("%s knows n1 by %q, want %q", m.Name, got, g.Incarnation())
					}
					if got, _ := g.Learn(m.ID, ""); got != "inc-"+m.Name {
						t.Fatalf("n1 knows %s by %q, want its incarnation", m.Name, got)
					}
				}
			case "waits":
				servertest.WaitFor(t, "the wait for n3", func() bool {
					err := g.Err()
					return err != nil && strings.HasSuffix(err.Error(), "(waiting for n3)")
				})
				g.Stop()
				if g.Serving() || g.Sealed() {
					t.Fatal("served without n3's word")
				}
			case "refused":
				select {
				case err := <-fatal:
					if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refused) {
						t.Fatalf("stopped with %v, want a refusal with %q", err, tc.refused)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("not stopped within 10s")
				}
				g.Stop()
				if g.Serving() || g.Sealed() {
					t.Fatal("a refused node serves")
				}
			case "closed":
				if g.Serving() {
					t.Fatal("served after Stop")
				}
			}
			if tc.outcome != "refused" && len(fatal) > 0 {
				t.Fatalf("stopped: %v", <-fatal)
			}
		})
	}
}

func allDown(p *fakePeers) {
	for _, m := range p.members {
		m.down = true
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("not served within 10s")
	}
}

// A restart of a sealed node serves at once, its peers down; an emptied
// directory under the same name gets a new incarnation, which the members
// that recorded the old one refuse.
func TestGuardRestartAndAmnesia(t *testing.T) {
	ms := threeNodes(1)
	peers := newFakePeers(ms)
	dir := newDir(t)
	start := func(dir *storage.Dir) (*Guard, chan error) {
		fatal := make(chan error, 1)
		g, err := New(Config{Name: "n1"}, dir, peers, func() membership.Membership { return ms }, func(err error) { fatal <- err }, servertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Stop)
		g.Start(func() {})
		return g, fatal
	}
	g, _ := start(dir)
	servertest.WaitFor(t, "the seal", g.Sealed)
	g.Stop()
	allDown(peers)

	again, _ := start(dir)
	if !again.Serving() || again.Incarnation() != g.Incarnation() {
		t.Fatalf("the sealed node restarted: serving %v, incarnation %q (was %q)", again.Serving(), again.Incarnation(), g.Incarnation())
	}
	again.Stop()

	for _, m := range peers.members {
		m.down = false
	}
	emptied, fatal := start(newDir(t))
	if emptied.Incarnation() == g.Incarnation() || emptied.ID() != g.ID() {
		t.Fatal("an emptied directory kept its incarnation, or its node changed ID")
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("the emptied node stopped with %v, want ErrRefused", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the emptied node was not refused within 10s")
	}
	if emptied.Serving() {
		t.Fatal("the emptied node served")
	}
}
