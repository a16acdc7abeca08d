package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/transport"
)

// joiner starts a node with --join at fresh addresses and data directory.
func (c *testCluster) joiner(t *testing.T, name, dir string) int {
	t.Helper()
	addrs := freeAddrs(t, 2)
	c.cfgs = append(c.cfgs, Config{Name: name, DataDir: dir, ClientAddr: addrs[0], PeerAddr: addrs[1], Join: true,
		RequestTimeout: 2 * time.Second, Transport: transport.Config{DeadAfter: 2 * time.Second}})
	c.daemons = append(c.daemons, nil)
	c.start(t, len(c.daemons)-1)
	return len(c.daemons) - 1
}

func httpDo(t *testing.T, method, url, body string) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(mustRequest(t, method, url, body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return string(b)
}

// TestMembershipOverHTTP grows 3 -> 5 and shrinks to 3 through the HTTP
// API, replacing a node that lost its disk on the way, and reads back every
// value written before through the nodes that are left.
func TestMembershipOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	cl := c.client(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := cl.Put(ctx, fmt.Sprint("key-", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	admin := "http://" + c.cfgs[0].ClientAddr + "/v1/members"
	n4 := c.joiner(t, "n4", t.TempDir())
	httpDo(t, "POST", admin, "n4="+c.cfgs[n4].PeerAddr)
	n5 := c.joiner(t, "n5", t.TempDir())
	out := httpDo(t, "POST", admin, "n5="+c.cfgs[n5].PeerAddr)
	if !strings.Contains(out, `"config_version":4`) || !strings.Contains(out, `"n5"`) {
		t.Fatalf("after two adds: %s", out)
	}
	// n2 loses its disk: stop it, remove it, bring it back empty.
	c.stop(1)
	httpDo(t, "DELETE", admin+"/n2", "")
	c.cfgs[1].DataDir, c.cfgs[1].Join, c.cfgs[1].Cluster = t.TempDir(), true, nil
	c.start(t, 1)
	if c.daemons[1].id == NodeID("n2") {
		t.Fatal("a replaced disk kept the node ID of its name: its ballots would start again at 0")
	}
	httpDo(t, "POST", admin, "n2="+c.cfgs[1].PeerAddr)
	httpDo(t, "DELETE", admin+"/n4", "")
	httpDo(t, "DELETE", admin+"/n5", "")
	out = httpDo(t, "GET", admin, "")
	for _, name := range []string{"n4", "n5"} {
		if strings.Contains(out, `"`+name+`"`) {
			t.Fatalf("%s still listed: %s", name, out)
		}
	}
	// n1, the new n2 and n3 remain; any one of them may fail: cut n1 off.
	c.stop(0)
	cl3 := c.client(t, 2)
	for i := range 50 {
		got, err := cl3.Get(ctx, fmt.Sprint("key-", i))
		if err != nil || string(got.Data) != fmt.Sprint("v", i) {
			t.Fatalf("key-%d: %q %v", i, got.Data, err)
		}
	}
}

// A node that joined, was added and then removed stops by itself and is
// refused if started again on its data directory, though it runs with
// --join; while it was being added, it did not take itself for removed.
func TestRemovedJoinerStopsAndIsRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	admin := "http://" + c.cfgs[0].ClientAddr + "/v1/members"
	n4 := c.joiner(t, "n4", t.TempDir())
	httpDo(t, "POST", admin, "n4="+c.cfgs[n4].PeerAddr)
	select {
	case <-c.daemons[n4].Removed():
		t.Fatal("a node that was being added reported itself removed")
	default:
	}
	httpDo(t, "DELETE", admin+"/n4", "")
	select {
	case <-c.daemons[n4].Removed():
	case <-time.After(20 * time.Second):
		t.Fatal("the removed joiner did not stop serving within 20s of the change")
	}
	c.stop(n4)
	if d, err := Start(c.cfgs[n4]); err == nil || !strings.Contains(err.Error(), "was removed from the cluster") {
		if d != nil {
			d.Stop()
		}
		t.Fatalf("a removed joiner started again: %v, want a refusal that says it was removed", err)
	}
}
