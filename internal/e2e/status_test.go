package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/server/status"
)

// TestStatusCommand runs `caspaxos status` against three real nodes: one
// row each, with its own name and ID, the members reached, the registers
// it counted, the requests answered, and a quorum; with a node
// killed, its row says so, the others see it unreachable, and the command
// fails. Under tls+auth a user without read on every key is refused.
// `status --cluster` given one endpoint shows every member's row, the
// killed one's with its error.
func TestStatusCommand(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testStatusCommand(t, s) })
	}
}

type statusOut struct {
	Nodes []struct {
		Endpoint string `json:"endpoint"`
		Member   string `json:"member"`
		MemberID uint64 `json:"member_id"`
		status.Node
		Error string `json:"error"`
	} `json:"nodes"`
}

func testStatusCommand(t *testing.T, s setup) {
	ctx := context.Background()
	c := newClusterWith(t, 3, s, "st/", "--status-count-interval", "100ms")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	cl := c.client(0, 1, 2)
	const keys = 40
	for k := range keys {
		if _, err := cl.Put(ctx, fmt.Sprintf("st/%02d", k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	all := []string{"--endpoints", c.procs[0].client + "," + c.procs[1].client + "," + c.procs[2].client}
	statusJSON := func() (statusOut, string, int) {
		t.Helper()
		out, errOut, code := c.runWith(append(all, "-o", "json", "status"), true)
		var st statusOut
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -o json: exit %d: %v: %s%s", code, err, out, errOut)
		}
		return st, errOut, code
	}
	// Every node has counted the keys within a few counts.
	deadline := time.Now().Add(20 * time.Second)
	var st statusOut
	for {
		var code int
		var errOut string
		st, errOut, code = statusJSON()
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		ok := len(st.Nodes) == 3
		for _, n := range st.Nodes {
			ok = ok && n.Registers >= keys
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registers never reached %d on every node: %+v", keys, st)
		}
		waitUntil(time.Now().Add(100 * time.Millisecond))
	}
	ids := map[uint64]bool{}
	var requests uint64
	for i, n := range st.Nodes {
		if n.Endpoint != c.procs[i].client || n.Name != c.procs[i].name || n.ID == 0 || ids[n.ID] || !n.Quorum || !n.GC || n.Version == "" ||
			n.DataDirBytes == 0 || n.ConfigVersion == 0 || n.WALFsyncP99Seconds <= 0 || len(n.Peers) != 3 {
			t.Fatalf("row %d: %+v", i, n)
		}
		ids[n.ID] = true
		requests += n.RequestsTotal
		for _, p := range n.Peers {
			if !p.Reachable || (!p.Self && p.RTTSeconds <= 0) {
				t.Fatalf("row %d: peer %+v", i, p)
			}
		}
	}
	if requests < keys {
		t.Fatalf("the nodes answered %d requests in all, want at least the %d puts", requests, keys)
	}
	out, errOut, code := c.runWith(append(all, "status"), true)
	if code != 0 || !strings.HasPrefix(out, "ENDPOINT") || strings.Count(out, "\n") != 4 || strings.Count(out, "2/2 (") != 3 {
		t.Fatalf("status table: exit %d:\n%s%s", code, out, errOut)
	}
	t.Logf("status:\n%s", out)
	checkStatusCluster(t, c, ids)

	if s.secure {
		args := append(append(append([]string{}, all...), c.cliFlags(false)...), "--user", appUser+":"+appPassword, "status")
		if out, err := exec.Command(binaryPath, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("status as %s: %v: %s, want permission denied", appUser, err, out)
		}
	}

	c.kill(2)
	c.waitUnreachable(0, "n3")
	c.waitUnreachable(1, "n3")
	st, errOut, code = statusJSON()
	if code == 0 || st.Nodes[2].Error == "" || st.Nodes[2].Node.Name != "" || !strings.Contains(errOut, "1 of 3 endpoints did not answer") {
		t.Fatalf("with n3 dead: exit %d, %+v, %s", code, st.Nodes[2], errOut)
	}
	for _, n := range st.Nodes[:2] {
		for _, p := range n.Peers {
			if p.Name == "n3" && p.Reachable {
				t.Fatalf("%s sees n3 reachable", n.Name)
			}
		}
		if !n.Quorum {
			t.Fatalf("%s has no quorum with two of three", n.Name)
		}
	}
	checkStatusClusterKilled(t, c, 2)
}

// clusterStatus runs `status --cluster -o json` with node via's client
// address as the only endpoint.
func clusterStatus(t *testing.T, c *cluster, via int) (statusOut, string, int) {
	t.Helper()
	out, errOut, code := c.run(via, true, "-o", "json", "status", "--cluster")
	var st statusOut
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --cluster -o json via %s: exit %d: %v: %s%s", c.procs[via].name, code, err, out, errOut)
	}
	return st, errOut, code
}

// checkStatusCluster: given any one node, `status --cluster` shows the
// three members in name order, each answered by its own node at its
// client address, with the IDs the plain status showed (ids).
func checkStatusCluster(t *testing.T, c *cluster, ids map[uint64]bool) {
	t.Helper()
	for via := range c.procs {
		st, errOut, code := clusterStatus(t, c, via)
		if code != 0 || len(st.Nodes) != len(c.procs) {
			t.Fatalf("status --cluster via %s: exit %d, %+v: %s", c.procs[via].name, code, st, errOut)
		}
		seen := map[uint64]bool{}
		for i, n := range st.Nodes {
			p := c.procs[i]
			if n.Error != "" || n.Endpoint != p.client || n.Member != p.name || n.Name != p.name || n.ID != n.MemberID ||
				!ids[n.ID] || seen[n.ID] || !n.Quorum || len(n.Peers) != 3 {
				t.Fatalf("status --cluster via %s, row %d: %+v", c.procs[via].name, i, n)
			}
			seen[n.ID] = true
		}
	}
	out, errOut, code := c.run(1, true, "status", "--cluster")
	if code != 0 || !strings.HasPrefix(out, "ENDPOINT") || strings.Count(out, "\n") != 4 || strings.Count(out, "2/2 (") != 3 {
		t.Fatalf("status --cluster table: exit %d:\n%s%s", code, out, errOut)
	}
	for _, p := range c.procs {
		if !strings.Contains(out, p.client) {
			t.Fatalf("status --cluster table has no row at %s:\n%s", p.client, out)
		}
	}
	t.Logf("status --cluster:\n%s", out)
}

// checkStatusClusterKilled: with node dead killed, `status --cluster`
// through each live node still lists every member, the dead one's row
// with its error and no figures, and fails naming it.
func checkStatusClusterKilled(t *testing.T, c *cluster, dead int) {
	t.Helper()
	for via := range c.procs {
		if via == dead {
			continue
		}
		st, errOut, code := clusterStatus(t, c, via)
		if code == 0 || len(st.Nodes) != len(c.procs) || !strings.Contains(errOut, "1 of 3 members did not answer") {
			t.Fatalf("status --cluster via %s with %s dead: exit %d, %+v: %s", c.procs[via].name, c.procs[dead].name, code, st, errOut)
		}
		for i, n := range st.Nodes {
			if n.Member != c.procs[i].name || n.MemberID == 0 {
				t.Fatalf("status --cluster via %s, row %d: %+v", c.procs[via].name, i, n)
			}
			if failed := n.Error != "" || n.Name == ""; failed != (i == dead) {
				t.Fatalf("status --cluster via %s with %s dead, row %d: %+v", c.procs[via].name, c.procs[dead].name, i, n)
			}
		}
	}
	out, _, code := c.run(0, true, "status", "--cluster")
	if code == 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, c.procs[dead].name+" ") || !strings.Contains(out, "error: ") {
		t.Fatalf("status --cluster table with %s dead: exit %d:\n%s", c.procs[dead].name, code, out)
	}
	t.Logf("status --cluster with %s dead:\n%s", c.procs[dead].name, out)
}

// runWith runs a caspaxos command with args (as root on a secure cluster
// if admin) and returns its stdout, stderr and exit code.
func (c *cluster) runWith(args []string, admin bool) (string, string, int) {
	c.t.Helper()
	// run puts --endpoints of one node first; a later --endpoints wins.
	return c.run(0, admin, args...)
}
