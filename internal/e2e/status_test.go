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
func TestStatusCommand(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) { testStatusCommand(t, s) })
	}
}

type statusOut struct {
	Nodes []struct {
		Endpoint string `json:"endpoint"`
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
}

// runWith runs a caspaxos command with args (as root on a secure cluster
// if admin) and returns its stdout, stderr and exit code.
func (c *cluster) runWith(args []string, admin bool) (string, string, int) {
	c.t.Helper()
	// run puts --endpoints of one node first; a later --endpoints wins.
	return c.run(0, admin, args...)
}
