package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/node"
)

// A node over its quota refuses writes with no_space, over HTTP (507) and
// the Go client (ErrNoSpace), also writes that another node forwards to
// it as their home; gets and deletes still answer, and deletion GC
// collects the tombstones on every node. Node n1 has no quota; n2 and n3
// have a quota of one byte, which their stores (a WAL at least) exceed.
func TestNoSpaceOverTheNetwork(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		fastGC(cfg)
		cfg.Node.Space = node.SpaceConfig{CheckInterval: time.Nanosecond}
		if cfg.Name != "n1" {
			cfg.Node.Space.QuotaBytes = 1
		}
	})
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	members := c.daemons[0].members.Membership().IDs()
	homedAt := func(name string) string {
		for i := 0; i < 1000; i++ {
			k := fmt.Sprint("key-", i)
			if server.Home(k, members) == NodeID(name) {
				return k
			}
		}
		t.Fatalf("no key homed at %s", name)
		return ""
	}
	k1, k2 := homedAt("n1"), homedAt("n2")
	cl1, cl2 := c.client(t, 0), c.client(t, 1)
	if _, err := cl1.Put(ctx, k1, []byte("v")); err != nil {
		t.Fatalf("put at n1, homed at n1 (no quota): %v", err)
	}
	// n1 forwards k2 to its home only while it measures n2 near (a loaded
	// machine can make a round trip look far, and n1 then proposes k2
	// itself, without a quota).
	waitFor(t, "n1 to measure n2 near", func() bool {
		rtt, ok := c.daemons[0].tr.RTT(NodeID("n2"))
		return ok && rtt <= kv.ForwardMaxRTT
	})
	if _, err := cl1.Put(ctx, k2, []byte("v")); !errors.Is(err, client.ErrNoSpace) {
		t.Fatalf("put at n1 forwarded to n2 (over quota): %v, want ErrNoSpace", err)
	}
	if _, _, err := cl2.Increment(ctx, k1, 1); !errors.Is(err, client.ErrNoSpace) {
		t.Fatalf("incr at n2 (over quota): %v, want ErrNoSpace", err)
	}
	if v, err := cl2.Get(ctx, k1); err != nil || string(v.Data) != "v" {
		t.Fatalf("get at n2 (over quota): %q, %v", v.Data, err)
	}
	req, _ := http.NewRequestWithContext(ctx, "PUT", "http://"+c.cfgs[2].ClientAddr+"/v1/kv/"+k1, strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), `"no_space"`) {
		t.Fatalf("HTTP put at n3 (over quota): %d %s, want 507 no_space", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + c.cfgs[2].ClientAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\ncaspaxos_storage_bytes ", "\ncaspaxos_storage_disk_free_bytes ", `outcome="no_space"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	if _, err := cl2.Delete(ctx, k1, 0); err != nil {
		t.Fatalf("delete at n2 (over quota): %v", err)
	}
	// One node's GC may finish before another's round writes over its
	// copy (step 4 then says later, protocol.Collectible): wait until every
	// node's GC is done and no node holds the key, within a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, d := range c.daemons {
			waitGCDone(t, c.cfgs[i].Name, d)
		}
		held := ""
		for i, d := range c.daemons {
			if r, err := d.store.Get(k1); err != nil || r.State.Deleted || r.Accepted.Counter != 0 {
				held = fmt.Sprintf("%s still holds %s after its delete and GC: %+v, %v", c.cfgs[i].Name, k1, r, err)
				break
			}
		}
		if held == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(held)
		}
	}
}
