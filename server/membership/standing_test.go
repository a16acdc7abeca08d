package membership

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

func ptr(b bool) *bool { return &b }

func TestHoldOver(t *testing.T) {
	held := NodeState{Changing: true, Controller: "n1", ChangeID: "c1"}
	old := NodeState{Changing: true, Controller: "n1"} // from a controller without change IDs
	for _, tc := range []struct {
		name     string
		controls *bool
		id       string
		held     NodeState
		want     bool
	}{
		{"the controller cannot tell", nil, "", held, false},
		{"it runs the change", ptr(true), "c1", held, false},
		{"it runs no change", ptr(false), "", held, true},
		{"it runs another change", ptr(true), "c2", held, true},
		{"an old hold, no change", ptr(false), "", old, true},
		{"an old hold, an old change", ptr(true), "", old, false},
		{"a new hold, its change rewritten by an earlier release", ptr(true), "", held, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holdOver(tc.controls, tc.id, tc.held); got != tc.want {
				t.Fatalf("holdOver = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRemovedBy(t *testing.T) {
	m := memberOf(1, 2, 3) // version 1
	for _, tc := range []struct {
		name string
		info PeerInfo
		want bool
	}{
		{"a newer membership without it", PeerInfo{Version: 2, CallerListed: ptr(false)}, true},
		{"a newer membership with it", PeerInfo{Version: 2, CallerListed: ptr(true)}, false},
		{"the same version without it", PeerInfo{Version: 1, CallerListed: ptr(false)}, false},
		{"an older one without it", PeerInfo{Version: 0, CallerListed: ptr(false)}, false},
		{"a peer in the middle of a change", PeerInfo{Version: 2, CallerListed: ptr(false), Changing: true}, false},
		{"a peer that predates the question", PeerInfo{Version: 2}, false},
	} {
		if got := removedBy(m, tc.info); got != tc.want {
			t.Errorf("%s: removedBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStandingConfigValidate(t *testing.T) {
	good := StandingConfig{Self: Member{Name: "n1", ID: 1}, WatchInterval: time.Millisecond, ProbeInterval: time.Millisecond,
		RemovedGrace: time.Millisecond, InfoTimeout: time.Millisecond}
	for _, tc := range []struct {
		name string
		mod  func(*StandingConfig)
		want string // "" if valid
	}{
		{"valid", func(*StandingConfig) {}, ""},
		{"no watch interval", func(c *StandingConfig) { c.WatchInterval = 0 }, "WatchInterval"},
		{"a negative probe interval", func(c *StandingConfig) { c.ProbeInterval = -1 }, "ProbeInterval"},
		{"no grace", func(c *StandingConfig) { c.RemovedGrace = 0 }, "RemovedGrace"},
		{"no info timeout", func(c *StandingConfig) { c.InfoTimeout = 0 }, "InfoTimeout"},
		{"no self", func(c *StandingConfig) { c.Self = Member{} }, "Self"},
	} {
		cfg := good
		tc.mod(&cfg)
		err := cfg.validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// fakeAnswer is a peer's answer to Info, or none.
type fakeAnswer struct {
	down bool
	info PeerInfo
}

// fakeStandingPeers answer Info and ReleaseHold by peer address.
type fakeStandingPeers struct {
	mu       sync.Mutex
	answers  map[string]fakeAnswer
	releases map[string]error
	callers  []protocol.NodeID
}

func (f *fakeStandingPeers) set(addr string, a fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = map[string]fakeAnswer{}
	}
	f.answers[addr] = a
}

func (f *fakeStandingPeers) Info(_ context.Context, to Member, caller protocol.NodeID, _ string) (PeerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callers = append(f.callers, caller)
	a, ok := f.answers[to.PeerAddr]
	if !ok || a.down {
		return PeerInfo{}, errors.New("connection refused")
	}
	return a.info, nil
}

func (f *fakeStandingPeers) ReleaseHold(_ context.Context, to Member, _ bool) (Hold, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.releases[to.PeerAddr]; err != nil {
		return Hold{}, err
	}
	return Hold{Released: true, Controller: "ghost", ChangeID: "g1"}, nil
}

// newStanding returns the Standing of node id of c, over peers, its changes
// in store and its record in a new directory.
func newStanding(t *testing.T, c *memberCluster, id protocol.NodeID, peers StandingPeers, store ChangeStore) *Standing {
	t.Helper()
	self := Member{Name: "n" + string(rune('0'+id)), ID: id}
	s, err := NewStanding(StandingConfig{Self: self, WatchInterval: time.Millisecond, ProbeInterval: time.Millisecond,
		RemovedGrace: 50 * time.Millisecond, InfoTimeout: time.Second},
		c.state(id), c.controller(id, &localMembers{c: c}, store), NewRecord(storage.NewDir(nil, t.TempDir())), peers, servertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// The hold probe frees a node held by a change its controller says is
// over, and nothing else; an operator's release also frees a node whose
// controller cannot tell, unless that controller is a member (then only by
// force), and never one whose controller runs the change.
func TestReleaseHold(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &fakeStandingPeers{}
	store := &memChanges{}
	s := newStanding(t, c, 1, peers, store)
	keeper := c.state(1)
	from := keeper.Membership()
	answers := func(info PeerInfo) func() {
		return func() { peers.set("addr-2", fakeAnswer{info: info}) }
	}
	for _, tc := range []struct {
		name       string
		controller string // of the hold; "" for none
		setup      func()
		force      bool
		probe      bool   // the hold probe frees it
		release    bool   // the release frees it
		refused    string // a part of the release's refusal, "" if none
	}{
		{name: "not held", setup: func() {}},
		{name: "a controller never listed", controller: "ghost", setup: func() {}, release: true},
		{name: "it runs the change", controller: "n2", setup: answers(PeerInfo{ID: 2, Version: 1, Controls: ptr(true), ChangeID: "c1"}),
			refused: "n2 still runs the change (c1)"},
		{name: "it runs none", controller: "n2", setup: answers(PeerInfo{ID: 2, Version: 1, Controls: ptr(false)}), probe: true, release: true},
		{name: "it runs another", controller: "n2", setup: answers(PeerInfo{ID: 2, Version: 1, Controls: ptr(true), ChangeID: "c2"}), probe: true, release: true},
		{name: "a member down", controller: "n2", setup: func() { peers.set("addr-2", fakeAnswer{down: true}) }, refused: "a member that does not answer"},
		{name: "a member down, by force", controller: "n2", setup: func() { peers.set("addr-2", fakeAnswer{down: true}) }, force: true, release: true},
		{name: "a member that lost its state", controller: "n2", setup: answers(PeerInfo{ID: 2, Version: 0, Controls: ptr(false)}),
			refused: "does not answer"},
		{name: "another node at its address", controller: "n2", setup: answers(PeerInfo{ID: 9, Version: 1, Controls: ptr(false)}),
			refused: "does not answer"},
		{name: "a member predating the question", controller: "n2", setup: answers(PeerInfo{ID: 2, Version: 1}), refused: "does not answer"},
		{name: "its own running change", controller: "n1", setup: func() {
			if err := store.SaveChange(&Change{ID: "c1"}); err != nil {
				t.Fatal(err)
			}
		}, refused: "n1 still runs the change"},
		{name: "its own change over", controller: "n1", setup: func() {
			if err := store.SaveChange(nil); err != nil {
				t.Fatal(err)
			}
		}, probe: true, release: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := servertest.Ctx(t, 5*time.Second)
			tc.setup()
			hold := func() NodeState {
				st := NodeState{Membership: from}
				if tc.controller != "" {
					st.Changing, st.Controller, st.ChangeID = true, tc.controller, "c1"
				}
				if err := keeper.Set(ctx, st); err != nil {
					t.Fatal(err)
				}
				return keeper.State()
			}
			held := hold()
			if got := s.probeHold(ctx, held); got != tc.probe || keeper.State().Changing == tc.probe && tc.controller != "" {
				t.Fatalf("the hold probe freed it: %v, want %v", got, tc.probe)
			}
			held = hold()
			h, err := s.ReleaseHold(ctx, tc.force)
			if tc.refused != "" {
				if !errors.Is(err, ErrHoldInUse) || !strings.Contains(err.Error(), tc.refused) || !keeper.State().Changing {
					t.Fatalf("release = %+v, %v; want a refusal with %q, still held", h, err, tc.refused)
				}
				if _, err := keeper.ReleaseStale(held); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := Hold{Released: tc.release}
			if tc.controller != "" {
				want.Controller, want.ChangeID = tc.controller, "c1"
			}
			if err != nil || h != want || keeper.State().Changing {
				t.Fatalf("release = %+v, %v; want %+v, not held", h, err, want)
			}
		})
	}
}

// ReleaseHolds runs the release on every member, this one directly, and
// returns the releases done with the refusals.
func TestReleaseHolds(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &fakeStandingPeers{releases: map[string]error{"addr-3": ErrHoldInUse}}
	s := newStanding(t, c, 1, peers, &memChanges{})
	ctx := servertest.Ctx(t, 5*time.Second)
	if _, err := s.ReleaseHolds(ctx, "n9", false); !errors.Is(err, ErrHoldInUse) || !strings.Contains(err.Error(), `"n9" is not a member`) {
		t.Fatalf("release of a stranger: %v", err)
	}
	out, err := s.ReleaseHolds(ctx, "", false)
	want := []HoldRelease{{Name: "n1"}, {Name: "n2", Hold: Hold{Released: true, Controller: "ghost", ChangeID: "g1"}}}
	if len(out) != len(want) || out[0] != want[0] || out[1] != want[1] {
		t.Fatalf("releases %+v, want %+v", out, want)
	}
	if !errors.Is(err, ErrHoldInUse) || !strings.HasPrefix(err.Error(), "n3: ") {
		t.Fatalf("the refusal of n3: %v", err)
	}
	if out, err := s.ReleaseHolds(ctx, "n2", false); err != nil || len(out) != 1 || out[0].Name != "n2" {
		t.Fatalf("release of n2: %+v, %v", out, err)
	}
}

// Check refuses the start of a node a peer said was removed, or that has
// been a member and is not listed any more; it marks a listed node as a
// member.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		listed  bool
		was     bool   // WAS-MEMBER before
		removed string // REMOVED's content, "" for none
		refused string // a part of the refusal, "" if none
	}{
		{name: "a member", listed: true},
		{name: "a node being added", listed: false},
		{name: "a member no longer listed", was: true, refused: "n4 was removed from the cluster (membership version 1)"},
		{name: "told by a peer", listed: true, was: true, removed: "7\n", refused: "removed from the cluster while it was down (a peer uses membership version 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemberCluster(t, 3)
			m := memberOf(1, 2, 3)
			if tc.listed {
				m = memberOf(1, 2, 3, 4)
			}
			c.start(4, NodeState{Membership: m})
			s := newStanding(t, c, 4, &fakeStandingPeers{}, &memChanges{})
			if tc.was {
				if err := s.record.MarkMember(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.removed != "" {
				if err := s.record.dir.WriteState(storage.RemovedFile, []byte(tc.removed)); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Check()
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("Check = %v, want a refusal with %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fresh := NewRecord(s.record.dir)
			if was, err := fresh.WasMember(); err != nil || was != tc.listed {
				t.Fatalf("WAS-MEMBER after Check: %v, %v; want %v", was, err, tc.listed)
			}
		})
	}
}

// A member closes Removed once its membership no longer lists it and no
// change holds it; a member that a peer's newer membership no longer lists
// closes it too, and records it (REMOVED), so that it refuses to start.
func TestStandingRemoved(t *testing.T) {
	t.Run("by its own membership", func(t *testing.T) {
		c := newMemberCluster(t, 3)
		s := newStanding(t, c, 3, &fakeStandingPeers{}, &memChanges{})
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		s.Start()
		without := memberOf(1, 2)
		without.Config.Version = 2
		if err := c.state(3).Set(servertest.Ctx(t, 5*time.Second), NodeState{Membership: without, Controller: "n1"}); err != nil {
			t.Fatal(err)
		}
		waitRemoved(t, s)
	})
	t.Run("held outside its membership: after the grace", func(t *testing.T) {
		c := newMemberCluster(t, 3)
		s := newStanding(t, c, 3, &fakeStandingPeers{}, &memChanges{}) // n1, the controller, does not answer
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		s.Start()
		without := memberOf(1, 2)
		without.Config.Version = 2
		set := time.Now()
		if err := c.state(3).Set(servertest.Ctx(t, 5*time.Second), NodeState{Membership: without, Changing: true, Controller: "n1", ChangeID: "c1"}); err != nil {
			t.Fatal(err)
		}
		waitRemoved(t, s)
		if waited := time.Since(set); waited < s.cfg.RemovedGrace {
			t.Fatalf("removed after %v, within the grace of %v", waited, s.cfg.RemovedGrace)
		}
	})
	t.Run("by a peer's", func(t *testing.T) {
		c := newMemberCluster(t, 3)
		peers := &fakeStandingPeers{}
		peers.set("addr-1", fakeAnswer{info: PeerInfo{ID: 1, Version: 2, CallerListed: ptr(false)}})
		s := newStanding(t, c, 3, peers, &memChanges{})
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		s.Start()
		waitRemoved(t, s)
		peers.mu.Lock()
		asked := peers.callers[0]
		peers.mu.Unlock()
		if asked != 3 {
			t.Fatalf("asked as caller %d, want 3", asked)
		}
		s.Stop()
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), "while it was down (a peer uses membership version 2") {
			t.Fatalf("Check after the removal: %v", err)
		}
	})
}

func waitRemoved(t *testing.T, s *Standing) {
	t.Helper()
	select {
	case <-s.Removed():
	case <-time.After(10 * time.Second):
		t.Fatal("Removed not closed within 10s")
	}
}
