package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/server/membership"
)

// hold marks daemon i as held by controller's change id, as a pause does.
func (c *testCluster) hold(t *testing.T, i int, controller, id string) {
	t.Helper()
	st := c.daemons[i].members.State()
	st.Changing, st.Controller, st.ChangeID = true, controller, id
	if err := c.daemons[i].members.Set(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// `caspaxos members release` (client.MemberRelease, through any node)
// frees nodes of a change whose controller is gone, and of no other:
//   - a controller that is not a member, and whose address nobody knows,
//     cannot be asked, so the hold probe leaves its holds; release frees them;
//   - a controller that answers that it still runs the change is refused;
//   - a member that does not answer is refused without force, freed with it.
func TestMembersRelease(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client(t, 0)
	names := []string{c.cfgs[0].Name, c.cfgs[1].Name, c.cfgs[2].Name}

	c.hold(t, 1, "ghost", "g1") // a controller no membership lists
	out, err := cl.MemberRelease(ctx, "", false)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	want := map[string]client.HoldRelease{
		names[0]: {Name: names[0]},
		names[1]: {Name: names[1], Released: true, Controller: "ghost", ChangeID: "g1"},
		names[2]: {Name: names[2]},
	}
	if len(out) != 3 {
		t.Fatalf("release answered %+v, want one row per member", out)
	}
	for _, r := range out {
		if r != want[r.Name] {
			t.Errorf("release of %s: %+v, want %+v", r.Name, r, want[r.Name])
		}
	}
	if c.daemons[1].members.State().Changing {
		t.Fatal("node 1 still held after its release")
	}

	// Node 0 stores a change c1 (as a running controller does): its hold
	// on node 2 is refused release, and the hold probe leaves it too.
	if err := (changeStore{c.daemons[0].dir}).SaveChange(&membership.Change{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	c.hold(t, 2, names[0], "c1")
	if _, err := cl.MemberRelease(ctx, names[2], false); !errors.Is(err, client.ErrMembership) {
		t.Fatalf("release of a hold whose controller runs the change: %v, want ErrMembership", err)
	}
	if _, err := cl.MemberRelease(ctx, names[2], true); !errors.Is(err, client.ErrMembership) {
		t.Fatalf("forced release of a hold whose controller runs the change: %v, want ErrMembership", err)
	}
	if !c.daemons[2].members.State().Changing {
		t.Fatal("node 2 freed of a running change")
	}
	if err := (changeStore{c.daemons[0].dir}).SaveChange(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hold probe to free node 2 of the change its controller dropped", func() bool {
		return !c.daemons[2].members.State().Changing
	})

	// Node 2, a member, is down: its hold on node 1 is released only by force.
	c.hold(t, 1, names[2], "d1")
	c.stop(2)
	if _, err := cl.MemberRelease(ctx, names[1], false); !errors.Is(err, client.ErrMembership) {
		t.Fatalf("release of a hold by a member that does not answer: %v, want ErrMembership", err)
	}
	out, err = cl.MemberRelease(ctx, names[1], true)
	if err != nil || len(out) != 1 || !out[0].Released || out[0].Controller != names[2] {
		t.Fatalf("forced release: %+v, %v", out, err)
	}
	if c.daemons[1].members.State().Changing {
		t.Fatal("node 1 still held after a forced release")
	}

	// Over HTTP.
	c.hold(t, 1, "ghost", "g2")
	for _, tc := range []struct {
		query  string
		status int
		want   string
	}{
		{"?force=maybe", http.StatusBadRequest, `"bad_request"`},
		{"", http.StatusOK, `{"releases":[{"name":"n2","released":true,"controller":"ghost","change_id":"g2"}]}`},
	} {
		resp, err := http.Post("http://"+c.cfgs[0].ClientAddr+"/v1/members/release"+tc.query, "application/octet-stream", strings.NewReader(names[1]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Fatalf("POST /v1/members/release%s: %d %s, want %d with %s", tc.query, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
