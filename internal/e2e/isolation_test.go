package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/faultproxy"
	"github.com/caspaxos/caspaxos/internal/netlab"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/daemon"
)

// TestIsolateOneNode is the isolation experiment of bench (`go run
// ./cmd/bench isolation`), short: three nodes whose every peer link runs
// through a proxy; per node an incr client and a get+put client, each
// connected to its own node only and changing its own key, every key homed
// on n1. After a steady phase, every link of n1 is cut (a hang, as in a
// partition), then healed. It asserts correctness, not timing: the history
// is linearizable, no acknowledged write is lost, the clients of the other
// nodes keep succeeding while n1 is cut off (their keys' home is gone: they
// fail over), n1's clients cannot, and succeed again after the heal.
func TestIsolateOneNode(t *testing.T) {
	const steady, cut, after = 3 * time.Second, 5 * time.Second, 3 * time.Second
	opTimeout := time.Second
	addrs := freeAddrs(t, 6)
	clientAddrs, peerAddrs := addrs[:3], addrs[3:]
	mesh, err := netlab.NewMesh(peerAddrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mesh.Close)
	names := []string{"n1", "n2", "n3"}
	for i, name := range names {
		var members []string
		for j, other := range names {
			addr := peerAddrs[j]
			if j != i {
				addr = mesh.Addr(i, j)
			}
			members = append(members, other+"="+addr)
		}
		cmd := exec.Command(binaryPath, "serve", "--name", name, "--data-dir", t.TempDir(),
			"--client-addr", clientAddrs[i], "--peer-addr", peerAddrs[i], "--cluster", strings.Join(members, ","))
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	}

	ids := []protocol.NodeID{daemon.NodeID("n1"), daemon.NodeID("n2"), daemon.NodeID("n3")}
	var clients []*netlab.Client
	for i, name := range names {
		for _, loop := range []netlab.Loop{netlab.LoopIncr, netlab.LoopGetPut} {
			d, err := netlab.DialCaspaxos(clientAddrs[i])
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			key := homedOn(ids[0], ids, fmt.Sprintf("iso/%s/%s", name, strings.ReplaceAll(string(loop), "+", "-")))
			clients = append(clients, netlab.NewClient(name+" "+string(loop), i, loop, key, d))
		}
	}
	ctx := context.Background()
	for _, c := range clients {
		waitServed(t, c)
	}

	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		netlab.Run(ctx, clients, start, start.Add(steady+cut+after), netlab.Options{OpTimeout: opTimeout})
	}()
	waitUntil(start.Add(steady))
	mesh.Isolate(0, faultproxy.Hang)
	waitUntil(start.Add(steady + cut))
	mesh.Heal()
	<-done

	for _, c := range clients {
		isolated := c.Node == 0
		during := c.SuccessesBetween(steady+opTimeout, steady+cut)
		switch {
		case isolated && during > 0:
			t.Errorf("%s succeeded %d times while its node was cut off from every peer", c.Name, during)
		case !isolated && c.SuccessesBetween(steady+cut/2, steady+cut) == 0:
			t.Errorf("%s stopped succeeding while n1 (its key's home) was cut off", c.Name)
		}
	}
	// After the heal, every client's node serves its key again, and no
	// acknowledged write is lost.
	for i, c := range clients {
		out := finalRead(t, c, i)
		if last, ok := c.LastAcked(); ok && out.Value < last {
			t.Errorf("%s: final value %d, below the last acknowledged %d", c.Name, out.Value, last)
		}
		s, e := c.Counts()
		t.Logf("%s: %d successes, %d failed attempts, final %v", c.Name, s, e, out)
	}
	if got := netlab.Check(netlab.History(clients), 30*time.Second); got != "ok" {
		t.Fatalf("history: %s", got)
	}
}

// homedOn returns prefix, or prefix with a suffix, such that the key's home
// among ids is home.
func homedOn(home protocol.NodeID, ids []protocol.NodeID, prefix string) string {
	for i := 0; ; i++ {
		key := fmt.Sprintf("%s/%d", prefix, i)
		if server.Home(key, ids) == home {
			return key
		}
	}
}

// waitServed polls until the client's node serves a read of its key and
// every node's link is up (a read through each node needs a quorum).
func waitServed(t *testing.T, c *netlab.Client) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		out := c.Probe(ctx)
		cancel()
		if out.Status == netlab.OK || out.Status == netlab.NotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: its node never served: %v", c.Name, out)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

// finalRead reads the client's key through its own node, retrying until a
// deadline (the healed node may still be reconnecting), and records it.
func finalRead(t *testing.T, c *netlab.Client, id int) netlab.Out {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := c.Final(context.Background(), id, netlab.Options{OpTimeout: 2 * time.Second})
		if out.Status == netlab.OK {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no read of its key through its own node after the heal: %v", c.Name, out)
		}
		waitUntil(time.Now().Add(20 * time.Millisecond))
	}
}

func waitUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		<-time.After(d)
	}
}
