package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/transport"
)

// freeAddrs returns n loopback addresses that were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

type testCluster struct {
	cfgs    []Config
	daemons []*Daemon
}

func newTestCluster(t *testing.T, n int, mods ...func(*Config)) *testCluster {
	t.Helper()
	addrs := freeAddrs(t, 2*n)
	var members []Member
	for i := 0; i < n; i++ {
		members = append(members, Member{Name: fmt.Sprintf("n%d", i+1), PeerAddr: addrs[n+i]})
	}
	c := &testCluster{}
	for i := 0; i < n; i++ {
		// Three nodes in one process under the race detector, beside other
		// packages' tests: a peer may miss the default 300ms liveness window
		// without being gone, and fail-fast would refuse with no_quorum.
		c.cfgs = append(c.cfgs, Config{Name: members[i].Name, DataDir: t.TempDir(), ClientAddr: addrs[i],
			PeerAddr: addrs[n+i], Cluster: members, RequestTimeout: 2 * time.Second, Transport: transport.Config{DeadAfter: 2 * time.Second},
			// bcrypt's cheapest cost: its default takes seconds under -race,
			// past the requests' deadline.
			Auth: auth.Config{BcryptCost: bcrypt.MinCost}})
		for _, mod := range mods {
			mod(&c.cfgs[i])
		}
		c.daemons = append(c.daemons, nil)
		c.start(t, i)
	}
	t.Cleanup(func() {
		for _, d := range c.daemons {
			if d != nil {
				d.Stop()
			}
		}
	})
	return c
}

func (c *testCluster) start(t *testing.T, i int) {
	t.Helper()
	d, err := Start(c.cfgs[i])
	if err != nil {
		t.Fatal(err)
	}
	c.daemons[i] = d
}

func (c *testCluster) stop(i int) {
	c.daemons[i].Stop()
	c.daemons[i] = nil
}

// remove runs the removal of name on node i's controller and waits for it.
func (c *testCluster) remove(t *testing.T, i int, name string) {
	t.Helper()
	done, err := c.daemons[i].ctl.Remove(name)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the removal of %s did not finish within 30s", name)
	}
}

func (c *testCluster) client(t *testing.T, i int) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: []string{c.cfgs[i].ClientAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func waitHealthy(t *testing.T, addr string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered health with %d (last: %v %v)", addr, want, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterSurvivesOneNodeAndRefusesWithoutQuorum(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	ctx := context.Background()
	// HTTP on one node, gRPC on another: any node serves any key.
	resp, err := http.DefaultClient.Do(mustRequest(t, "PUT", "http://"+c.cfgs[0].ClientAddr+"/v1/kv/greeting", "hello"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("http put: %v %v", resp, err)
	}
	resp.Body.Close()
	cl1, cl3 := c.client(t, 1), c.client(t, 2)
	if v, err := cl1.Get(ctx, "greeting"); err != nil || string(v.Data) != "hello" {
		t.Fatalf("get on n2: %v %v", v, err)
	}
	for i := 0; i < 20; i++ {
		if _, _, err := cl3.Increment(ctx, fmt.Sprintf("counter-%d", i%4), 1); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(0)
	// A forward written to the socket just as its peer died may have run
	// there: its write has an unknown outcome. Writes issued once the
	// survivors see the peer gone must all succeed.
	waitUnreachable(t, c.daemons[1], "n1")
	for i := 0; i < 20; i++ {
		if _, _, err := cl1.Increment(ctx, fmt.Sprintf("counter-%d", i%4), 1); err != nil {
			t.Fatalf("increment with one node down: %v", err)
		}
	}
	c.stop(2)
	waitHealthy(t, c.cfgs[1].ClientAddr, 503)
	start := time.Now()
	_, err = cl1.Put(ctx, "greeting", []byte("nobody hears"))
	if !errors.Is(err, client.ErrNoQuorum) {
		t.Fatalf("put without quorum: %v", err)
	}
	t.Logf("put without quorum failed after %v: %v", time.Since(start), err)
	c.start(t, 0)
	c.start(t, 2)
	waitHealthy(t, c.cfgs[0].ClientAddr, 200)
	for i := 0; i < 4; i++ {
		v, err := c.client(t, 0).Get(ctx, fmt.Sprintf("counter-%d", i))
		if err != nil || string(v.Data) != "10" {
			t.Fatalf("counter-%d after restarts: %q %v", i, v.Data, err)
		}
	}
}

func waitUnreachable(t *testing.T, d *Daemon, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for d.reachable(NodeID(name)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still reachable from %s", name, d.cfg.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		// An admin POST's body must not be of a type a web page may send
		// cross-origin (the CSRF rule of clientapi).
		r.Header.Set("Content-Type", "application/octet-stream")
	}
	return r
}

func TestMetricsAndMembers(t *testing.T) {
	c := newTestCluster(t, 3)
	waitHealthy(t, c.cfgs[0].ClientAddr, 200)
	if _, err := c.client(t, 0).Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/metrics":    `caspaxos_request_duration_seconds_count{op="put",outcome="ok"} 1`,
		"/v1/members": `"name":"n3"`,
	} {
		resp, err := http.Get("http://" + c.cfgs[0].ClientAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Fatalf("%s lacks %q:\n%s", path, want, body)
		}
	}
}

// TestMembersListClientAddrs: every node's member listing (gRPC here; HTTP
// shares Daemon.Members) gives every member's client address, its own
// from its listener and the others' from their answers to Admin.Info, so
// that a client given one endpoint finds the rest.
func TestMembersListClientAddrs(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := range c.cfgs {
		waitHealthy(t, c.cfgs[i].ClientAddr, 200)
	}
	want := map[string]string{}
	for i, cfg := range c.cfgs {
		want[cfg.Name] = c.daemons[i].ClientAddr()
	}
	// A peer is asked once this node reaches it, which a healthy node
	// need not yet do for every peer: wait for the whole listing.
	for i := range c.cfgs {
		cl := c.client(t, i)
		complete := func() bool {
			ms, err := cl.Members(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != len(want) {
				return false
			}
			for _, m := range ms {
				if m.ClientAddr != want[m.Name] {
					return false
				}
			}
			return true
		}
		servertest.WaitFor(t, fmt.Sprintf("node %d to list every member's client address %v", i, want), complete)
	}
}

func TestInvalidConfiguration(t *testing.T) {
	good := Config{Name: "n1", DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:7080",
		Cluster: []Member{{"n1", "127.0.0.1:7080"}, {"n2", "127.0.0.1:7081"}, {"n3", "127.0.0.1:7082"}}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name is required"},
		{"name not in cluster", func(c *Config) { c.Name = "n9" }, `"n9" is not in Cluster`},
		{"peer addr differs", func(c *Config) { c.PeerAddr = "127.0.0.1:9999" }, "peer address"},
		{"bad client addr", func(c *Config) { c.ClientAddr = "nohost" }, "ClientAddr"},
		{"duplicate member", func(c *Config) { c.Cluster = append(c.Cluster, Member{"n2", "x:1"}) }, "twice"},
		{"quorums too small", func(c *Config) { c.PrepareQuorum, c.AcceptQuorum = 1, 2 }, "quorum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			cfg.Cluster = append([]Member(nil), good.Cluster...)
			tt.mod(&cfg)
			_, err := Start(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseCluster(t *testing.T) {
	m, err := ParseCluster("n1=127.0.0.1:7080, n2=127.0.0.1:7081")
	if err != nil || len(m) != 2 || m[1] != (Member{"n2", "127.0.0.1:7081"}) {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := ParseCluster("n1"); err == nil {
		t.Fatal("member without address accepted")
	}
}

func TestGracefulStopLeavesNoUnknownOutcomes(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	ctx := context.Background()
	cl := c.client(t, 0)
	// Keys homed on every node, the stopping one included.
	for i := 0; i < 30; i++ {
		if _, err := cl.Put(ctx, fmt.Sprintf("k%d", i), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(1)
	for i := 0; i < 30; i++ {
		if _, err := cl.Put(ctx, fmt.Sprintf("k%d", i), []byte("after")); err != nil {
			t.Fatalf("put k%d right after a graceful stop: %v (reachable=%v)", i, err, c.daemons[0].tr.Reachable(NodeID("n2")))
		}
	}
}

func TestPeerRTTMetric(t *testing.T) {
	c := newTestCluster(t, 3)
	waitHealthy(t, c.cfgs[0].ClientAddr, 200)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + c.cfgs[0].ClientAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		n := strings.Count(string(body), "\ncaspaxos_peer_rtt_seconds{peer=")
		if n == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, %d of 2 peers have a caspaxos_peer_rtt_seconds gauge:\n%s", n, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node removed from the cluster closes Removed once the change is done,
// whichever node ran it (itself included); the members left do not, and
// keep serving.
func TestRemovedNodeStops(t *testing.T) {
	for _, tc := range []struct {
		name       string
		controller int // index of the node that runs the removal of n3 (index 2)
	}{
		{"removed by a peer", 0},
		{"removed by itself", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3)
			for _, cfg := range c.cfgs {
				waitHealthy(t, cfg.ClientAddr, 200)
			}
			c.remove(t, tc.controller, "n3")
			if ch, err := c.daemons[tc.controller].ctl.Status(); ch != nil || err != nil {
				t.Fatalf("after the removal the controller reports %+v, %v", ch, err)
			}
			select {
			case <-c.daemons[2].Removed():
			case <-time.After(10 * time.Second):
				st := c.daemons[2].members.State()
				t.Fatalf("the removed node did not stop serving within 10s of the change; it has %+v changing=%v change=%+v", st.Membership, st.Changing, c.daemons[2].MemberChange())
			}
			cl := c.client(t, 0)
			if _, err := cl.Put(context.Background(), "after", []byte("v")); err != nil {
				t.Fatalf("put on the two members left: %v", err)
			}
			// Started again on its data directory, it refuses to serve.
			c.stop(2)
			if d, err := Start(c.cfgs[2]); err == nil || !strings.Contains(err.Error(), "was removed from the cluster") {
				if d != nil {
					d.Stop()
				}
				t.Fatalf("a removed node started again: %v, want a refusal that says it was removed", err)
			}
		})
	}
}

// TestRemovedWhileDownStops: a node removed while it was down still lists
// itself when it starts again; it learns of the removal from a peer, stops
// serving, and refuses to start after that.
func TestRemovedWhileDownStops(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	c.stop(2)
	c.remove(t, 0, "n3")
	c.start(t, 2) // its own state still lists it: it starts
	if _, listed := c.daemons[2].members.Membership().Node(c.daemons[2].id); !listed {
		t.Fatal("the restarted node already knows it was removed; the test shows nothing")
	}
	select {
	case <-c.daemons[2].Removed():
	case <-time.After(10 * time.Second):
		t.Fatalf("the node removed while down did not stop within 10s of its restart")
	}
	c.stop(2)
	if d, err := Start(c.cfgs[2]); err == nil || !strings.Contains(err.Error(), "removed from the cluster while it was down") {
		if d != nil {
			d.Stop()
		}
		t.Fatalf("a node removed while down started again: %v, want a refusal that says it was removed", err)
	}
	cl := c.client(t, 0)
	if _, err := cl.Put(context.Background(), "after", []byte("v")); err != nil {
		t.Fatalf("put on the two members left: %v", err)
	}
}

// TestInfoSaysWhetherCallerListed: Admin.Info answers caller_listed only
// when asked about a caller, so that a removal probe can tell "not listed"
// from a node that predates the question (see membership.removedBy).
func TestInfoSaysWhetherCallerListed(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, tc := range []struct {
		caller protocol.NodeID
		want   *bool
	}{
		{0, nil},
		{c.daemons[1].id, proto.Bool(true)},
		{c.daemons[1].id + 12345, proto.Bool(false)},
	} {
		// Through the Admin service of node 0, as its peers ask it.
		r, err := c.daemons[1].admin.Info(context.Background(), membership.Member{Name: c.cfgs[0].Name, PeerAddr: c.cfgs[0].PeerAddr}, tc.caller, "")
		if err != nil {
			t.Fatal(err)
		}
		if (r.CallerListed == nil) != (tc.want == nil) || r.CallerListed != nil && *r.CallerListed != *tc.want || r.Changing {
			t.Errorf("caller %d: caller_listed %v changing %v, want %v and false", tc.caller, r.CallerListed, r.Changing, tc.want)
		}
	}
}

// A node's refusals of a membership state cross the Admin service as the
// errors a controller tells apart: held by another change, older than the
// node's, or another membership of the same version. (Only "held" did: an
// older membership at a change's pause was then retried for good.)
func TestSetStateRefusalsCrossTheWire(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs { // serving: a node that is not refuses every state (server/identity)
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	ctx := context.Background()
	cur := c.daemons[1].members.State().Membership
	to, ok := cur.Node(c.daemons[1].id)
	if !ok {
		t.Fatal("node 1 not in its own membership")
	}
	newer := cur.Clone()
	newer.Config.Version++
	if err := c.daemons[1].members.Set(ctx, membership.NodeState{Membership: newer, Controller: "x"}); err != nil {
		t.Fatal(err)
	}
	other := newer.Clone()
	other.Nodes[0].PeerAddr = "elsewhere:1"
	for _, tc := range []struct {
		name string
		hold bool // node 1 is held by x's change first
		st   membership.NodeState
		want error
	}{
		{"older", false, membership.NodeState{Membership: cur, Changing: true, Controller: "y"}, membership.ErrMembershipOlder},
		{"conflict", false, membership.NodeState{Membership: other, Changing: true, Controller: "y"}, membership.ErrMembershipConflict},
		{"held", true, membership.NodeState{Membership: newer, Changing: true, Controller: "y"}, membership.ErrMembershipHeld},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hold {
				if err := c.daemons[1].members.Set(ctx, membership.NodeState{Membership: newer, Changing: true, Controller: "x"}); err != nil {
					t.Fatal(err)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.daemons[0].admin.SetState(cctx, to, tc.st); !errors.Is(err, tc.want) {
				t.Fatalf("SetState = %v, want %v", err, tc.want)
			}
		})
	}
}

// A node held by a change its controller no longer stores (abandoned by a
// controller that freed nothing, or whose release did not reach the node)
// frees itself: it would otherwise refuse every other controller's change,
// and its deletion GC would wait, for good.
func TestStaleHoldIsFreed(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := context.Background()
	for _, controller := range []int{0, 1} { // another node's change, and the node's own
		st := c.daemons[1].members.State()
		st.Changing, st.Controller, st.ChangeID = true, c.daemons[controller].cfg.Name, "gone"
		if err := c.daemons[1].members.Set(ctx, st); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for c.daemons[1].members.State().Changing {
			if time.Now().After(deadline) {
				t.Fatalf("held by %s's change that is over: still held after 20 s", st.Controller)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
