package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/node/nodetest"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/storage"
)

func TestPlanQuorums(t *testing.T) {
	cur := memberOf(1, 2, 3)
	for n := 3; n < 7; n++ {
		x := Member{Name: fmt.Sprint("n", n+1), ID: protocol.NodeID(n + 1), PeerAddr: "x"}
		steps, err := PlanAdd(cur, x)
		if err != nil {
			t.Fatal(err)
		}
		odd := n%2 == 1
		if want := map[bool]int{true: 2, false: 1}[odd]; len(steps) != want {
			t.Fatalf("add to %d: %d steps, want %d", n, len(steps), want)
		}
		first := steps[0]
		if !first.CopyFences || first.CatchUp != odd {
			t.Fatalf("add to %d: first step %+v", n, first)
		}
		if odd && (len(first.Membership.Config.PrepareSet) != n || first.Membership.Config.AcceptQuorum != (n-1)/2+2) {
			t.Fatalf("add to %d: first step grows the prepare set or has accept quorum %d", n, first.Membership.Config.AcceptQuorum)
		}
		last := steps[len(steps)-1].Membership
		if !last.Config.Steady() || len(last.Config.AcceptSet) != n+1 || last.Version() != cur.Version()+uint64(len(steps)) {
			t.Fatalf("add to %d: ends with %+v", n, last.Config)
		}
		cur = last
	}
	for n := 7; n > 1; n-- {
		name := fmt.Sprint("n", n)
		steps, err := PlanRemove(cur, name)
		if err != nil {
			t.Fatal(err)
		}
		odd := n%2 == 1
		if odd != steps[0].CatchUp || len(steps) != map[bool]int{true: 1, false: 2}[odd] {
			t.Fatalf("remove from %d: %+v", n, steps)
		}
		if !odd && len(steps[0].Membership.Config.PrepareSet) != n-1 {
			t.Fatalf("remove from %d: the prepare set shrinks first", n)
		}
		last := steps[len(steps)-1].Membership
		if _, ok := last.ByName(name); ok || !last.Config.Steady() || len(last.Nodes) != n-1 {
			t.Fatalf("remove from %d: ends with %+v", n, last)
		}
		cur = last
	}
	if _, err := PlanRemove(cur, "n1"); err == nil {
		t.Fatal("removed the last member")
	}
	if _, err := PlanAdd(cur, Member{Name: "n1", ID: 9, PeerAddr: "x"}); err == nil {
		t.Fatal("added a name twice")
	}
	steps, _ := PlanAdd(memberOf(1, 2, 3), Member{Name: "n4", ID: 4, PeerAddr: "x"})
	if _, err := PlanAdd(steps[0].Membership, Member{Name: "n5", ID: 5, PeerAddr: "x"}); !errors.Is(err, ErrNotSteady) {
		t.Fatalf("planned from a configuration halfway through a change: %v", err)
	}
}

func memberOf(ids ...protocol.NodeID) Membership {
	m := Membership{Config: protocol.Majority(1, ids...)}
	for _, id := range ids {
		m.Nodes = append(m.Nodes, Member{Name: fmt.Sprint("n", id), ID: id, PeerAddr: fmt.Sprint("addr-", id)})
	}
	return m
}

// memberCluster is nodes on a node.Local network with membership state, which
// a controller reaches through localMembers.
type memberCluster struct {
	t      *testing.T
	net    *node.Local
	mu     sync.Mutex
	nodes  map[protocol.NodeID]*node.Node
	states map[protocol.NodeID]*Keeper
	stores map[protocol.NodeID]*storage.Memory
}

func newMemberCluster(t *testing.T, n int) *memberCluster {
	c := &memberCluster{t: t, net: node.NewLocal(), nodes: map[protocol.NodeID]*node.Node{},
		states: map[protocol.NodeID]*Keeper{}, stores: map[protocol.NodeID]*storage.Memory{}}
	ids := make([]protocol.NodeID, n)
	for i := range ids {
		ids[i] = protocol.NodeID(i + 1)
	}
	m := memberOf(ids...)
	for _, id := range ids {
		c.start(id, NodeState{Membership: m})
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range c.nodes {
			n.Stop()
		}
	})
	return c
}

// start runs node id with st; a zero st is a joining node (no configuration
// it could reach a quorum with).
func (c *memberCluster) start(id protocol.NodeID, st NodeState) {
	cfg := st.Membership.Config
	if cfg.Version == 0 {
		cfg = JoiningConfig(id)
	}
	store := storage.NewMemory()
	ep := c.net.Endpoint(id)
	node, err := node.New(nodetest.FastConfig(id, cfg), store, ep, ep, servertest.Logger(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.net.Add(node); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[id], c.stores[id] = node, store
	c.states[id] = NewKeeper(node, st, nil, func(NodeState) error { return nil })
}

func (c *memberCluster) state(id protocol.NodeID) *Keeper {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.states[id]
}

// localMembers is Peers over a memberCluster; down nodes fail.
type localMembers struct {
	c    *memberCluster
	down sync.Map // protocol.NodeID -> bool
}

func (l *localMembers) get(m Member) (*Keeper, error) {
	if d, _ := l.down.Load(m.ID); d == true {
		return nil, server.ErrUnreachable
	}
	s := l.c.state(m.ID)
	if s == nil {
		return nil, server.ErrUnreachable
	}
	return s, nil
}

func (l *localMembers) SetState(ctx context.Context, to Member, st NodeState) error {
	s, err := l.get(to)
	if err != nil {
		return err
	}
	return s.Set(ctx, st)
}

func (l *localMembers) Settled(ctx context.Context, to Member, v uint64) (bool, error) {
	s, err := l.get(to)
	if err != nil {
		return false, err
	}
	return s.Settled(ctx, v)
}

func (l *localMembers) Fences(_ context.Context, to Member) (Fences, error) {
	if _, err := l.get(to); err != nil {
		return Fences{}, err
	}
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return ReadFences(l.c.stores[to.ID])
}

func (l *localMembers) SetFences(ctx context.Context, to Member, f Fences) error {
	if _, err := l.get(to); err != nil {
		return err
	}
	l.c.mu.Lock()
	n := l.c.nodes[to.ID]
	l.c.mu.Unlock()
	return TakeFences(ctx, n, f)
}

func (l *localMembers) ScanKeys(_ context.Context, to Member, start string, limit int) ([]string, error) {
	if _, err := l.get(to); err != nil {
		return nil, err
	}
	l.c.mu.Lock()
	st := l.c.stores[to.ID]
	l.c.mu.Unlock()
	return ScanKeys(st, start, limit)
}

// memChanges is a ChangeStore in memory; crashAt > 0 makes the crashAt-th
// save and every later one fail without saving (the disk is gone).
type memChanges struct {
	mu      sync.Mutex
	saved   []byte
	saves   int
	crashAt int
	crashed chan struct{}
}

func (m *memChanges) LoadChange() (*Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saved == nil {
		return nil, nil
	}
	var ch Change
	return &ch, json.Unmarshal(m.saved, &ch)
}

func (m *memChanges) SaveChange(ch *Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if m.crashAt > 0 && m.saves >= m.crashAt {
		if m.saves == m.crashAt {
			close(m.crashed)
		}
		return errors.New("crashed")
	}
	if ch == nil {
		m.saved = nil
		return nil
	}
	b, err := json.Marshal(ch)
	m.saved = b
	return err
}

func (c *memberCluster) controller(id protocol.NodeID, peers Peers, store ChangeStore) *Controller {
	s := c.state(id)
	self, _ := s.Membership().Node(id)
	ctl, err := NewController(ControllerConfig{Self: self, PageKeys: 7, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		CallTimeout: time.Second, SettlePoll: time.Millisecond}, peers, c.nodes[id].Proposer(), store, s.Membership, servertest.Logger(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(ctl.Stop)
	return ctl
}

// load increments counters through random nodes until stop, and returns
// per key the increments acknowledged and those of unknown outcome.
type load struct {
	acked, unknown [8]atomic.Int64
	stop           chan struct{}
	wg             sync.WaitGroup
}

func (c *memberCluster) runLoad(t *testing.T, ids func() []protocol.NodeID) *load {
	l := &load{stop: make(chan struct{})}
	for w := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				live := ids()
				c.mu.Lock()
				n := c.nodes[live[rng.IntN(len(live))]]
				c.mu.Unlock()
				k := rng.IntN(len(l.acked))
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := n.Do(ctx, kv.Op{Kind: kv.OpIncrement, Key: fmt.Sprint("k", k), Delta: 1})
				cancel()
				switch {
				case err == nil:
					l.acked[k].Add(1)
				case errors.Is(err, kv.ErrUnknownOutcome):
					l.unknown[k].Add(1)
				}
			}
		}()
	}
	return l
}

// check stops the load and reads every counter through node id: each must
// count every acknowledged increment and no more than were sent.
func (l *load) check(t *testing.T, n *node.Node) {
	close(l.stop)
	l.wg.Wait()
	for k := range l.acked {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := n.Do(ctx, kv.Op{Kind: kv.OpGet, Key: fmt.Sprint("k", k)})
		cancel()
		if err != nil {
			t.Fatalf("k%d: %v", k, err)
		}
		got := int64(0)
		if s.Exists() {
			got, _ = strconv.ParseInt(string(s.Value), 10, 64)
		}
		if a, u := l.acked[k].Load(), l.unknown[k].Load(); got < a || got > a+u {
			t.Fatalf("k%d = %d; acknowledged %d, unknown %d", k, got, a, u)
		}
	}
}

func waitChange(t *testing.T, done <-chan struct{}, ctl *Controller) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		ch, _ := ctl.Status()
		t.Fatalf("membership change did not finish: %+v", ch)
	}
	if _, err := ctl.Status(); err != nil {
		t.Fatal(err)
	}
}

// TestControllerGrowShrink grows 3 -> 5 and shrinks to 3 again under load,
// then replaces a node that lost its disk; no acknowledged increment is lost.
func TestControllerGrowShrink(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &localMembers{c: c}
	ctl := c.controller(1, peers, &memChanges{})
	members := func() []protocol.NodeID { return c.state(1).Membership().IDs() }
	l := c.runLoad(t, members)
	grow := func(id protocol.NodeID) {
		c.start(id, NodeState{})
		done, err := ctl.Add(Member{Name: fmt.Sprint("n", id), ID: id, PeerAddr: fmt.Sprint("addr-", id)})
		if err != nil {
			t.Fatal(err)
		}
		waitChange(t, done, ctl)
	}
	shrink := func(id protocol.NodeID) {
		done, err := ctl.Remove(fmt.Sprint("n", id))
		if err != nil {
			t.Fatal(err)
		}
		waitChange(t, done, ctl)
	}
	grow(4)
	grow(5)
	shrink(5)
	shrink(2)
	// n3 loses its disk: remove it while it is down, add it back empty
	// under a new ID (a new incarnation: its ballots start again at 0).
	peers.down.Store(protocol.NodeID(3), true)
	shrink(3)
	grow(6)
	want := []protocol.NodeID{1, 4, 6}
	for _, id := range want {
		st := c.state(id).State()
		if st.Changing || !slices.Equal(st.Membership.IDs(), want) || !st.Membership.Config.Steady() {
			t.Fatalf("node %d ends with %+v", id, st)
		}
	}
	// Nothing is lost with any one node of the three cut off: the old
	// node n1 here, so that the counters come from n4 and the new n6.
	c.net.SetHook(node.Hook{Down: func(from, to protocol.NodeID) bool { return from == 1 || to == 1 }})
	l.check(t, c.nodes[6])
}

// TestControllerResume crashes the controller at every save of a change
// and resumes it with a new controller: the change completes each time.
// The first controller goes on retrying after its store failed (as it does
// when the test is scheduled late on a loaded machine): it used to act on
// the progress it could not save, took the nodes through the later steps,
// and the resumed controller re-applied a step they had passed, refused
// forever (ErrMembershipOlder).
func TestControllerResume(t *testing.T) {
	for crashAt := 1; crashAt <= 14; crashAt++ {
		t.Run(fmt.Sprint("crash-at-", crashAt), func(t *testing.T) {
			c := newMemberCluster(t, 3)
			for i := range 20 {
				if _, err := c.nodes[1].Do(servertest.Ctx(t, time.Second), kv.Op{Kind: kv.OpPut, Key: fmt.Sprint("key-", i), Value: []byte("v")}); err != nil {
					t.Fatal(err)
				}
			}
			peers := &localMembers{c: c}
			store := &memChanges{crashAt: crashAt, crashed: make(chan struct{})}
			ctl := c.controller(1, peers, store)
			c.start(4, NodeState{})
			done, err := ctl.Add(Member{Name: "n4", ID: 4, PeerAddr: "addr-4"})
			if err != nil {
				if crashAt == 1 {
					return // the first save failed: nothing began
				}
				t.Fatal(err)
			}
			servertest.WaitFor(t, "the crashed controller to retry", func() bool {
				select {
				case <-done:
					return true
				default:
				}
				store.mu.Lock()
				defer store.mu.Unlock()
				return store.saves >= crashAt+20
			})
			ctl.Stop()
			checkNotAhead(t, c, store)
			store.mu.Lock()
			store.crashAt = 0
			store.mu.Unlock()
			ctl2 := c.controller(1, peers, store)
			if err := ctl2.Resume(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				ch, err := ctl2.Status()
				if ch == nil && err == nil {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("the resumed change did not finish: %+v", ch)
				}
				time.Sleep(time.Millisecond)
			}
			st := c.state(4).State()
			if st.Changing || len(st.Membership.IDs()) != 4 || !st.Membership.Config.Steady() {
				t.Fatalf("after resume: %+v", st)
			}
			// The catch-up's accepts reach n4 (a quorum of the others may
			// have answered first): without it, n4 would never get them.
			for i := range 20 {
				servertest.WaitFor(t, fmt.Sprint("key-", i, " on n4"), func() bool {
					reg, _ := c.stores[4].Get(fmt.Sprint("key-", i))
					return reg.State.Exists()
				})
			}
		})
	}
}

// checkNotAhead fails unless every node's membership is at most the one
// of the step the stored change is at: a controller resumed from the store
// must find the nodes no further than one phase ahead of it.
func checkNotAhead(t *testing.T, c *memberCluster, store *memChanges) {
	t.Helper()
	ch, err := store.LoadChange()
	if err != nil || ch == nil {
		return
	}
	limit := ch.From.Version()
	if ch.Paused {
		limit = ch.Steps[min(ch.Next, len(ch.Steps)-1)].Membership.Version()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, s := range c.states {
		if v := s.Membership().Version(); v > limit {
			t.Fatalf("n%d uses configuration %d, the stored change is at %d (paused %v, step %d)", id, v, limit, ch.Paused, ch.Next)
		}
	}
}

// TestKeeperSetRetried: a Set whose ctx ends after the state was
// persisted but before the proposer took the configuration is completed by
// a retried Set (it returned early on an unchanged state, and the node's
// proposer never settled on the version: the controller waited forever).
func TestKeeperSetRetried(t *testing.T) {
	c := newMemberCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewKeeper(c.nodes[1], c.state(1).State(), nil, func(NodeState) error { cancel(); return nil })
	next := memberOf(1, 2, 3)
	next.Config.Version = 2
	st := NodeState{Membership: next, Changing: true, Controller: "n1"}
	if err := s.Set(ctx, st); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with its ctx ended after persisting: %v", err)
	}
	if err := s.Set(servertest.Ctx(t, 5*time.Second), st); err != nil {
		t.Fatal(err)
	}
	if cfg, err := c.nodes[1].Proposer().Config(servertest.Ctx(t, 5*time.Second)); err != nil || cfg.Version != 2 {
		t.Fatalf("the proposer uses version %d (%v) after a retried Set of version 2", cfg.Version, err)
	}
	servertest.WaitFor(t, "n1 to settle on version 2", func() bool {
		ok, err := s.Settled(servertest.Ctx(t, 5*time.Second), 2)
		return err == nil && ok
	})
}

// hungScans is localMembers whose down nodes' key scans hang until their
// deadline, as a gRPC call waiting for a peer that never comes back does.
type hungScans struct{ *localMembers }

func (h hungScans) ScanKeys(ctx context.Context, to Member, start string, limit int) ([]string, error) {
	if d, _ := h.down.Load(to.ID); d == true {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.localMembers.ScanKeys(ctx, to, start, limit)
}

// TestControllerRemoveDeadNode: removing a node that is gone for good
// does not wait for its key scans once a majority of the old acceptors
// answered (it waited CallTimeout for each page of both catch-up passes:
// 2 x 5s per 256 keys on a daemon).
func TestControllerRemoveDeadNode(t *testing.T) {
	c := newMemberCluster(t, 5)
	for i := range 30 { // 5 pages of 7 keys
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.nodes[1].Do(ctx, kv.Op{Kind: kv.OpPut, Key: fmt.Sprint("k", i), Value: []byte("v")})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	peers := hungScans{&localMembers{c: c}}
	ctl := c.controller(1, peers, &memChanges{}) // CallTimeout 1s
	peers.down.Store(protocol.NodeID(5), true)
	start := time.Now()
	done, err := ctl.Remove("n5")
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, done, ctl)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("removing a dead node took %v: its key scans were waited for", took)
	}
	if ch, _ := ctl.Status(); ch != nil {
		t.Fatalf("change still reported: %+v", ch)
	}
}

// abandonedAdd starts adding n4 through ctl, waits for the change to end,
// and checks that it was abandoned because of why and that the nodes free
// are held no more.
func abandonedAdd(t *testing.T, c *memberCluster, ctl *Controller, why error, free ...protocol.NodeID) {
	t.Helper()
	done, err := ctl.Add(Member{Name: "n4", ID: 4, PeerAddr: "addr-4"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		ch, _ := ctl.Status()
		t.Fatalf("the refused change did not end: %+v", ch)
	}
	if _, err := ctl.Status(); !errors.Is(err, errAbort) || !strings.Contains(err.Error(), why.Error()) {
		t.Fatalf("the refused change ended with %v, want it abandoned for %v", err, why)
	}
	for _, id := range free {
		if st := c.state(id).State(); st.Changing {
			t.Fatalf("n%d still held after the change was abandoned: %+v", id, st)
		}
	}
}

// TestAbandonedChangeReleasesNodes: a change whose pause finds a node held
// by another controller's change is abandoned, and frees the nodes its
// pause did hold. Left held, they refused every other controller's change
// (and their deletion GC waited) for good: two controllers that began at
// once each held some nodes, and no change could run again.
func TestAbandonedChangeReleasesNodes(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &localMembers{c: c}
	from := c.state(1).Membership()
	// n2's change holds n3 (as if it had just paused it).
	if err := c.state(3).Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Changing: true, Controller: "n2"}); err != nil {
		t.Fatal(err)
	}
	ctl1 := c.controller(1, peers, &memChanges{})
	c.start(4, NodeState{})
	abandonedAdd(t, c, ctl1, ErrMembershipHeld, 1, 2, 4)
	if st := c.state(3).State(); !st.Changing || st.Controller != "n2" {
		t.Fatalf("n3, held by n2's change, was released by n1's: %+v", st)
	}
	// n2's change gets on: here it gives up too, and n2's controller then
	// adds n4 (it holds n3 already, and n1, n2 and n4 are free).
	if err := c.state(3).Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Controller: "n2"}); err != nil {
		t.Fatal(err)
	}
	ctl2 := c.controller(2, peers, &memChanges{})
	done, err := ctl2.Add(Member{Name: "n4", ID: 4, PeerAddr: "addr-4"})
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, done, ctl2)
	if ids := c.state(1).Membership().IDs(); len(ids) != 4 {
		t.Fatalf("after n2's change: members %v", ids)
	}
}

// A change planned from a membership some node has already left behind
// (another controller's change ended in between) is abandoned as well; its
// pause was retried for good before.
func TestChangeFromOldMembershipAbandoned(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &localMembers{c: c}
	newer := c.state(1).Membership().Clone()
	newer.Config.Version++
	if err := c.state(3).Set(servertest.Ctx(t, time.Second), NodeState{Membership: newer, Controller: "n2"}); err != nil {
		t.Fatal(err)
	}
	ctl := c.controller(1, peers, &memChanges{})
	c.start(4, NodeState{})
	abandonedAdd(t, c, ctl, ErrMembershipOlder, 1, 2, 4)
}

// An abandoned change does not wait for the node it was to add when that
// node is down, nor ask the nodes that refused it; resumed from its store
// (its controller restarted), it goes on releasing.
func TestAbandonedChangeReleaseDoesNotWaitForTheJoiner(t *testing.T) {
	c := newMemberCluster(t, 3)
	peers := &localMembers{c: c}
	from := c.state(1).Membership()
	if err := c.state(3).Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Changing: true, Controller: "n2"}); err != nil {
		t.Fatal(err)
	}
	c.start(4, NodeState{})
	peers.down.Store(protocol.NodeID(4), true)
	store := &memChanges{}
	ctl := c.controller(1, peers, store)
	abandonedAdd(t, c, ctl, ErrMembershipHeld, 1, 2)

	// A controller restarted mid-release goes on releasing.
	if err := c.state(1).Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Changing: true, Controller: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveChange(&Change{Op: "add", Target: Member{Name: "n4", ID: 4, PeerAddr: "addr-4"}, From: from,
		Abandon: "test", Refused: []protocol.NodeID{3}}); err != nil {
		t.Fatal(err)
	}
	ctl2 := c.controller(1, peers, store)
	if err := ctl2.Resume(); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the resumed release", func() bool {
		ch, _ := ctl2.Status()
		return ch == nil && !c.state(1).State().Changing
	})
	if _, err := ctl2.Status(); !errors.Is(err, errAbort) {
		t.Fatalf("resumed release ended with %v, want abandoned", err)
	}
}

// ReleaseStale frees only the hold it was asked about: a node that some
// change (or the same controller's next one) held since keeps that hold.
func TestReleaseStaleOnlyTheHoldAskedAbout(t *testing.T) {
	c := newMemberCluster(t, 3)
	s := c.state(1)
	from := s.Membership()
	held := NodeState{Membership: from, Changing: true, Controller: "n2", ChangeID: "c1"}
	if err := s.Set(servertest.Ctx(t, time.Second), held); err != nil {
		t.Fatal(err)
	}
	newer := from.Clone()
	newer.Config.Version++
	for _, tc := range []struct {
		name string
		ask  NodeState
	}{
		{"another controller", NodeState{Membership: from, Changing: true, Controller: "n3", ChangeID: "c1"}},
		{"another change", NodeState{Membership: from, Changing: true, Controller: "n2", ChangeID: "c2"}},
		{"another membership", NodeState{Membership: newer, Changing: true, Controller: "n2", ChangeID: "c1"}},
		{"not a hold", NodeState{Membership: from, Controller: "n2", ChangeID: "c1"}},
	} {
		if ok, err := s.ReleaseStale(tc.ask); ok || err != nil {
			t.Fatalf("%s: released %v, %v", tc.name, ok, err)
		}
		if !s.State().Changing {
			t.Fatalf("%s: the hold is gone", tc.name)
		}
	}
	if ok, err := s.ReleaseStale(held); !ok || err != nil {
		t.Fatalf("the hold asked about: released %v, %v", ok, err)
	}
	if st := s.State(); st.Changing || st.ChangeID != "" || st.Membership.Version() != from.Version() {
		t.Fatalf("after release: %+v", st)
	}
	if ok, _ := s.ReleaseStale(held); ok {
		t.Fatal("released twice")
	}
}

// The end of a controller's earlier change, arriving late (its call timed
// out, then landed), does not free a node its next change holds.
func TestLateEndOfAnEarlierChangeRefused(t *testing.T) {
	c := newMemberCluster(t, 3)
	s := c.state(1)
	from := s.Membership()
	if err := s.Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Changing: true, Controller: "n2", ChangeID: "c2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Controller: "n2", ChangeID: "c1"}); !errors.Is(err, ErrMembershipHeld) {
		t.Fatalf("late end of c1: %v, want ErrMembershipHeld", err)
	}
	if !s.State().Changing {
		t.Fatal("the late end of c1 freed the node c2 holds")
	}
	if err := s.Set(servertest.Ctx(t, time.Second), NodeState{Membership: from, Controller: "n2", ChangeID: "c2"}); err != nil {
		t.Fatalf("end of c2: %v", err)
	}
	if st := s.State(); st.Changing || st.ChangeID != "" {
		t.Fatalf("after c2's end: %+v", st)
	}
}

// TestHoldController: the controller of a hold is found while the
// membership lists it, and still once a step of its change (it removes
// itself) gave the node a membership that does not: it may still run the
// change, and must be asked before the hold is freed.
func TestHoldController(t *testing.T) {
	c := newMemberCluster(t, 3)
	ctx := servertest.Ctx(t, 5*time.Second)
	s := c.state(2)
	if _, ok := s.HoldController(s.State()); ok {
		t.Fatal("a node not held has a hold controller")
	}
	held := s.State()
	held.Changing, held.Controller, held.ChangeID = true, "n3", "c1"
	if err := s.Set(ctx, held); err != nil {
		t.Fatal(err)
	}
	want, _ := held.Membership.ByName("n3")
	if got, ok := s.HoldController(s.State()); !ok || got != want {
		t.Fatalf("controller listed: %+v, %v; want %+v", got, ok, want)
	}
	step := memberOf(1, 2) // n3 removes itself
	step.Config.Version = held.Membership.Version() + 1
	if err := s.Set(ctx, NodeState{Membership: step, Changing: true, Controller: "n3", ChangeID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.HoldController(s.State()); !ok || got != want {
		t.Fatalf("controller no longer listed: %+v, %v; want %+v as listed before", got, ok, want)
	}
	other := s.State()
	other.Controller = "n9"
	if _, ok := s.HoldController(other); ok {
		t.Fatal("a controller never listed was found")
	}
}
