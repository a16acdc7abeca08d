package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/disktest"
	"github.com/caspaxos/caspaxos/server/identity"
	"github.com/caspaxos/caspaxos/storage"
)

// waitFatal waits for d to stop for good and returns why.
func waitFatal(t *testing.T, d *Daemon) error {
	t.Helper()
	select {
	case <-d.Fatal():
		return d.FatalErr()
	case <-time.After(15 * time.Second):
		t.Fatal("the node did not stop within 15s")
		return nil
	}
}

// TestEmptiedMemberRefused is the amnesia of a bootstrap member: n1's data
// directory is emptied and n1 restarted with the same flags, while the
// write it helped acknowledge is held by n2 alone. n1 must never serve; its
// peers refuse it, whichever of them it reaches.
func TestEmptiedMemberRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		// up is the member n1 can ask after its restart: n2 (held the
		// write) or n3 (was down when it was acknowledged).
		up int
	}{
		{"asks the member that holds the write", 1},
		{"asks the member that was down", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3)
			for _, cfg := range c.cfgs {
				waitHealthy(t, cfg.ClientAddr, 200)
			}
			c.stop(2)
			if _, err := c.client(t, 0).Put(context.Background(), "k", []byte("acknowledged")); err != nil {
				t.Fatal(err)
			}
			c.stop(0)
			disktest.Empty(t, c.cfgs[0].DataDir)
			if tc.up == 2 {
				c.stop(1)
				c.start(t, 2)
			}
			c.start(t, 0)
			err := waitFatal(t, c.daemons[0])
			if !errors.Is(err, identity.ErrRefused) || !strings.Contains(err.Error(), "members remove n1") {
				t.Fatalf("the emptied n1 stopped with %v, want a refusal of its identity that says what to do", err)
			}
			if c.daemons[0].guard.Serving() {
				t.Fatal("the emptied n1 served")
			}
		})
	}
}

// TestNewClusterServesOnceEveryMemberAnswered: a new cluster's nodes
// wait for one another (they answer health 503 saying whom they wait for),
// and serve with no extra step once all have started; a restart of a
// sealed node serves at once, with the others down.
func TestNewClusterServesOnceEveryMemberAnswered(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	for i := range c.daemons {
		c.stop(i)
	}
	// The same cluster, its nodes started one by one on new directories.
	for i := range c.cfgs {
		c.cfgs[i].DataDir = t.TempDir()
	}
	c.start(t, 0)
	c.start(t, 1)
	waitHealthSays(t, c.cfgs[0].ClientAddr, "waiting for n3")
	if c.daemons[0].guard.Serving() || c.daemons[1].guard.Serving() {
		t.Fatal("a node served before every member confirmed it")
	}
	c.start(t, 2)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	if _, err := c.client(t, 1).Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.stop(1)
	c.stop(2)
	c.stop(0)
	c.start(t, 0)
	if !c.daemons[0].guard.Serving() {
		t.Fatal("a sealed node restarted with its peers down does not serve (as an acceptor) at once")
	}
}

// TestEmptiedMemberAfterMembershipChangeRefused: a bootstrap member whose
// directory is emptied after the cluster moved on must not act on the
// bootstrap membership of --cluster, even if no member knows its old
// incarnation (here: it was removed, and its directory emptied).
func TestEmptiedMemberAfterMembershipChangeRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	c.stop(2)
	c.remove(t, 0, "n3")
	disktest.Empty(t, c.cfgs[2].DataDir)
	c.start(t, 2)
	err := waitFatal(t, c.daemons[2])
	if !errors.Is(err, identity.ErrRefused) || !strings.Contains(err.Error(), "does not list n3") {
		t.Fatalf("the removed and emptied n3 stopped with %v, want a refusal: not listed", err)
	}
}

// TestUpgradedMembersServeWhileSealing: directories of a release before
// IDENTITY (no IDENTITY or PEERS, a WAS-MEMBER) hold their state: such
// nodes serve at once, two of three being enough, and seal once every
// member answers; a rolling upgrade never takes a quorum out.
func TestUpgradedMembersServeWhileSealing(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	if _, err := c.client(t, 0).Put(context.Background(), "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	for i := range c.daemons {
		c.stop(i)
		for _, name := range []storage.StateFile{storage.IdentityFile, storage.PeersFile} {
			if err := os.Remove(filepath.Join(c.cfgs[i].DataDir, string(name))); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.start(t, 0)
	c.start(t, 1)
	waitHealthy(t, c.cfgs[0].ClientAddr, 200)
	if v, err := c.client(t, 1).Get(context.Background(), "k"); err != nil || string(v.Data) != "before" {
		t.Fatalf("get on upgraded n1, n2 with n3 down: %q %v", v.Data, err)
	}
	if c.daemons[0].guard.Sealed() {
		t.Fatal("n1 sealed without n3's word")
	}
	c.start(t, 2)
	deadline := time.Now().Add(10 * time.Second)
	for i, d := range c.daemons {
		for !d.guard.Sealed() {
			if time.Now().After(deadline) {
				t.Fatalf("n%d not sealed 10s after every member was upgraded", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestEmptiedMemberNotSealedByAChange (a reviewer's scenario): every other
// bootstrap member was replaced by joiners, which never learnt n1's
// incarnation; n1 is emptied and restarted, and a change run elsewhere
// pauses every member, n1 included. n1 must not take that membership (it
// would then seal against the joiners and serve empty).
func TestEmptiedMemberNotSealedByAChange(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	admin := "http://" + c.cfgs[0].ClientAddr + "/v1/members"
	n4 := c.joiner(t, "n4", t.TempDir())
	httpDo(t, "POST", admin, "n4="+c.cfgs[n4].PeerAddr)
	n5 := c.joiner(t, "n5", t.TempDir())
	httpDo(t, "POST", admin, "n5="+c.cfgs[n5].PeerAddr)
	httpDo(t, "DELETE", admin+"/n2", "")
	httpDo(t, "DELETE", admin+"/n3", "")
	c.stop(1)
	c.stop(2)
	c.stop(0)
	disktest.Empty(t, c.cfgs[0].DataDir)
	c.start(t, 0)
	n6 := c.joiner(t, "n6", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := c.daemons[n4].AddMember(ctx, "n6", c.cfgs[n6].PeerAddr) // pauses n1 too
	t.Logf("add n6 with the emptied n1 a member: %v", err)
	if c.daemons[0].guard.Serving() || c.daemons[0].guard.Sealed() {
		t.Fatal("the emptied n1 sealed and served once a change handed it the membership")
	}
	if v := c.daemons[0].members.Config().Version; v != 1 {
		t.Fatalf("the emptied n1 took membership version %d; want the bootstrap one", v)
	}
}

// TestStateFileDamageRefusedAtStart: a damaged membership state file is an
// error at start, never used as it is.
func TestStateFileDamageRefusedAtStart(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, 200)
	}
	c.stop(0)
	for _, name := range []storage.StateFile{storage.IdentityFile, storage.PeersFile} {
		path := filepath.Join(c.cfgs[0].DataDir, string(name))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		damaged := append([]byte(nil), b...)
		damaged[len(damaged)-2] ^= 0x20
		if err := os.WriteFile(path, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := Start(c.cfgs[0])
		if err == nil {
			d.Stop()
			t.Fatalf("a node started on a damaged %s", name)
		}
		if !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("damaged %s: %v, want ErrCorrupt", name, err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.start(t, 0)
	waitHealthy(t, c.cfgs[0].ClientAddr, 200)
}

// waitHealthSays waits for the node at addr to answer health 503 with a
// message that contains want.
func waitHealthSays(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/v1/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(last, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered health 503 with %q (last: %s)", addr, want, last)
}
