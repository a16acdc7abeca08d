package compat

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
)

// secure is a cluster with TLS on both ports (client certificates
// required) and auth on: the user app may read and write app/ only.
type secure struct {
	dir     string
	c       *cluster
	clients []string // client-port addresses, for the caspaxos CLI
	consul  []string // Consul API addresses
}

const (
	rootPassword = "root-secret"
	appPassword  = "app-secret"
)

func (s *secure) file(name string) string { return filepath.Join(s.dir, name) }

func (s *secure) tlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := transport.TLSInfo{CertFile: s.file("client.pem"), KeyFile: s.file("client-key.pem"), TrustedCAFile: s.file("ca.pem")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// cli runs the caspaxos CLI on node 0's client port, as root if admin.
func (s *secure) cli(t *testing.T, admin bool, args ...string) {
	t.Helper()
	full := []string{"--endpoints", s.clients[0], "--cacert", s.file("ca.pem"), "--cert", s.file("client.pem"), "--key", s.file("client-key.pem")}
	if admin {
		full = append(full, "--user", "root:"+rootPassword)
	}
	if out, err := exec.Command(binaryPath, append(full, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("caspaxos %v: %v\n%s", args, err, out)
	}
}

func startSecure(t *testing.T) *secure {
	t.Helper()
	s := &secure{dir: t.TempDir()}
	if out, err := exec.Command(binaryPath, "certs", "create", "--dir", s.dir, "--nodes", "n1,n2,n3").CombinedOutput(); err != nil {
		t.Fatalf("certs create: %v\n%s", err, out)
	}
	var clients []string
	s.consul = freeAddrs(t, 3)
	s.c = startCluster(t, 3, func(name string) []string {
		var i int
		fmt.Sscanf(name, "n%d", &i)
		return []string{"--consul-addr", s.consul[i-1], "--cert-file", s.file(name + ".pem"), "--key-file", s.file(name + "-key.pem"),
			"--trusted-ca-file", s.file("ca.pem"), "--client-cert-auth",
			"--peer-cert-file", s.file(name + "-peer.pem"), "--peer-key-file", s.file(name + "-peer-key.pem"),
			"--peer-trusted-ca-file", s.file("peer-ca.pem")}
	})
	clients = s.c.clients
	s.clients = clients
	// Before auth is on, every call is open: wait until all nodes serve.
	waitReady(t, clientv3.Config{Logger: quiet, DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t)}, s.c.etcd)
	s.cli(t, false, "user", "add", "root:"+rootPassword)
	s.cli(t, false, "auth", "enable")
	s.cli(t, true, "user", "add", "app:"+appPassword)
	s.cli(t, true, "role", "add", "rw")
	s.cli(t, true, "role", "grant", "rw", "readwrite", "app/", "--prefix")
	s.cli(t, true, "user", "grant-role", "app", "rw")
	return s
}

// TestSecureClientV3: over TLS with client certificates, clientv3 logs in
// with Authenticate and gets what app's role allows, on every node, and
// nothing else; a call without credentials is refused.
func TestSecureClientV3(t *testing.T) {
	s := startSecure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, ep := range s.c.etcd {
		cli, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: []string{ep}, DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t),
			Username: "app", Password: appPassword})
		if err != nil {
			t.Fatalf("node %d: login: %v", i, err)
		}
		defer cli.Close()
		// Other nodes may check against auth state up to --auth-staleness old.
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := cli.Put(ctx, "app/k", "v")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: app may not write app/k: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // polling another process's cache
		}
		if _, err := cli.Put(ctx, "secret", "v"); codeOf(err) != codes.PermissionDenied {
			t.Fatalf("node %d: a write outside app/: %v, want PermissionDenied", i, err)
		}
		if _, err := cli.Get(ctx, "secret"); codeOf(err) != codes.PermissionDenied {
			t.Fatalf("node %d: a read outside app/: %v, want PermissionDenied", i, err)
		}
		tx, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("app/k"), "=", "v")).Then(clientv3.OpPut("app/k", "w")).Commit()
		if err != nil || !tx.Succeeded {
			t.Fatalf("node %d: Txn on app/k: %+v %v", i, tx, err)
		}
		if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("secret"), "=", "v")).Then(clientv3.OpPut("secret", "w")).Commit(); codeOf(err) != codes.PermissionDenied {
			t.Fatalf("node %d: a Txn outside app/: %v, want PermissionDenied", i, err)
		}
	}
	root, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: s.c.etcd[:1], DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t),
		Username: "root", Password: rootPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Put(ctx, "secret", "root's"); err != nil {
		t.Fatalf("root writes anywhere: %v", err)
	}
	app, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: s.c.etcd[:1], DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t),
		Username: "app", Password: appPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	// Leases need write on the lease's reserved key: root has it, app not.
	l, err := root.Grant(ctx, 10)
	if err != nil {
		t.Fatalf("root's Grant: %v", err)
	}
	if ka, err := root.KeepAliveOnce(ctx, l.ID); err != nil || ka.TTL != 10 {
		t.Fatalf("root's KeepAliveOnce: %+v %v", ka, err)
	}
	if _, err := app.KeepAliveOnce(ctx, l.ID); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("app's KeepAliveOnce of root's lease: %v, want PermissionDenied", err)
	}
	if _, err := app.Grant(ctx, 10); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("app's Grant: %v, want PermissionDenied", err)
	}
	// A lock's name is guarded as a key (the lease is not checked against
	// the caller): app locks under app/ with root's lease, nothing else.
	locks := v3lockpb.NewLockClient(app.ActiveConnection())
	held, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("app/lock"), Lease: int64(l.ID)})
	if err != nil {
		t.Fatalf("app's Lock of app/lock: %v", err)
	}
	if _, err := locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.GetKey()}); err != nil {
		t.Fatalf("app's Unlock of app/lock: %v", err)
	}
	if _, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("other"), Lease: int64(l.ID)}); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("app's Lock of other: %v, want PermissionDenied", err)
	}
	if _, err := v3electionpb.NewElectionClient(app.ActiveConnection()).Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("other")}); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("app's Leader of other: %v, want PermissionDenied", err)
	}
	if _, err := root.Revoke(ctx, l.ID); err != nil {
		t.Fatalf("root's Revoke: %v", err)
	}
	// A watch of everything shows app only its keys; a key it may not
	// read is refused.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wch := app.Watch(wctx, "", clientv3.WithPrefix())
	if _, err := root.Put(ctx, "secret", "hidden"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx, "app/w", "seen"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, wch, "app's watch of everything"); string(ev.Kv.Key) != "app/w" {
		t.Fatalf("app's watch of everything delivered %q", ev.Kv.Key)
	}
	if _, err := root.Delete(ctx, "app/w"); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-app.Watch(ctx, "secret"):
		if wr.Err() == nil || !strings.Contains(wr.Err().Error(), "permission denied") {
			t.Fatalf("app's watch of secret: %+v, err %v", wr, wr.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("app's watch of secret: no answer within 10 s")
	}
	// A listing shows only what app may read.
	all, err := app.Get(ctx, "", clientv3.WithFromKey())
	if err != nil || all.Count != 1 || string(all.Kvs[0].Key) != "app/k" {
		t.Fatalf("app lists everything: %+v %v, want app/k only", all, err)
	}
	if _, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: s.c.etcd[:1], DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t),
		Username: "app", Password: "wrong"}); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("a wrong password: %v, want etcd's authentication failed", err)
	}
	anon, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: s.c.etcd[:1], DialTimeout: 5 * time.Second, TLS: s.tlsConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Get(ctx, "app/k"); codeOf(err) != codes.Unauthenticated && codeOf(err) != codes.PermissionDenied {
		t.Fatalf("a read without credentials: %v, want Unauthenticated or PermissionDenied", err)
	}
	secureConsulChecks(t, s) // consul_test.go: the same cluster's Consul API
	// Without a client certificate the handshake fails.
	noCert := s.tlsConfig(t)
	noCert.Certificates = nil
	bare, err := clientv3.New(clientv3.Config{Logger: quiet, Endpoints: s.c.etcd[:1], DialTimeout: 2 * time.Second, TLS: noCert})
	if err == nil {
		defer bare.Close()
		short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
		defer cancelShort()
		if _, err := bare.Get(short, "app/k"); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
}

// TestSecureEtcdctl: etcdctl over TLS with a client certificate and --user.
func TestSecureEtcdctl(t *testing.T) {
	bin := findEtcdctl(t)
	s := startSecure(t)
	tlsArgs := []string{"--cacert", s.file("ca.pem"), "--cert", s.file("client.pem"), "--key", s.file("client-key.pem")}
	e := etcdctl{t: t, bin: bin, endpoints: s.c.etcd[0]}
	as := func(user string, args ...string) []string {
		return append(append(append([]string{}, tlsArgs...), "--user", user), args...)
	}
	e.must("", as("root:"+rootPassword, "put", "app/a", "1"), "OK")
	e.must("", as("app:"+appPassword, "get", "app/a"), "app/a\n1")
	e.must("", as("app:"+appPassword, "put", "app/b", "2"), "OK")
	e.must("", as("app:"+appPassword, "get", "--prefix", "app/"), "app/a\n1\napp/b\n2")
	e.refused("", as("app:"+appPassword, "put", "other", "x"), "permission denied")
	e.must("", as("app:"+appPassword, "endpoint", "health"), "is healthy")
	e.must("", as("app:"+appPassword, "member", "list"), "n1", "n2", "n3")
	e.refused("", as("app:wrong", "get", "app/a"), "authentication failed")
}
