// Package compat drives caspaxos's etcd v3 API (server/etcdapi, docs/etcd.md)
// and Consul API (server/consulapi, docs/consul.md) with clients nobody here
// wrote: etcd's own Go client (clientv3), the etcdctl binary and Consul's Go
// api package, against 3-node clusters started as real processes. It is
// its own Go module, so that etcd's packages stay out of the product's
// go.mod; `make compat` runs it (and `make test` does too).
package compat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var binaryPath string

// quiet is clientv3's logger: its retry warnings would bury the test's
// own output (a failing call still fails the test with its error).
var quiet = zap.NewNop()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caspaxos-compat")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "caspaxos")
	build := exec.Command("go", "build", "-o", binaryPath, "./cmd/caspaxos")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caspaxos:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is n caspaxos nodes, each serving etcd's API on etcd[i].
type cluster struct {
	etcd    []string
	clients []string // the client port's addresses
	procs   []*exec.Cmd
}

// lockedBuffer is a node's log, written by its process's copier goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		defer l.Close()
	}
	return out
}

// startCluster starts n nodes with extra flags and waits until each
// answers a read through etcd's API.
func startCluster(t *testing.T, n int, extra func(name string) []string) *cluster {
	t.Helper()
	addrs := freeAddrs(t, 3*n)
	var members []string
	for i := range n {
		members = append(members, fmt.Sprintf("n%d=%s", i+1, addrs[n+i]))
	}
	c := &cluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"serve", "--name", name, "--data-dir", t.TempDir(), "--client-addr", addrs[i],
			"--peer-addr", addrs[n+i], "--etcd-addr", addrs[2*n+i], "--cluster", strings.Join(members, ","),
			"--min-free-bytes", "0"}
		if extra != nil {
			args = append(args, extra(name)...)
		}
		cmd := exec.Command(binaryPath, args...)
		logs := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = io.Discard, logs
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, logs.String())
			}
		})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, cmd)
		c.etcd = append(c.etcd, addrs[2*n+i])
		c.clients = append(c.clients, addrs[i])
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			_ = p.Process.Signal(syscall.SIGKILL)
			_ = p.Wait()
		}
	})
	return c
}

// waitReady waits until every endpoint answers a read.
func waitReady(t *testing.T, cfg clientv3.Config, endpoints []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, ep := range endpoints {
		cfg.Endpoints = []string{ep}
		cli, err := clientv3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := cli.Get(ctx, "ready")
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered a read: %v", ep, err)
			}
			time.Sleep(50 * time.Millisecond) // polling a process we do not control
		}
		cli.Close()
	}
}

// codeOf is err's gRPC code, also through clientv3's typed errors.
func codeOf(err error) codes.Code {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	var ee interface{ Code() codes.Code }
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// clientv3Checks runs clientv3's KV, Txn, Status and MemberList on the
// cluster, each against a different node where it matters.
func clientv3Checks(t *testing.T, cfg clientv3.Config, c *cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at := func(i int) *clientv3.Client {
		cfg := cfg
		cfg.Endpoints = []string{c.etcd[i]}
		cli, err := clientv3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	a, b := at(0), at(1)

	put, err := a.Put(ctx, "app/one", "1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := b.Get(ctx, "app/one")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "1" {
		t.Fatalf("Get at another node: %v %v", got, err)
	}
	if kv := got.Kvs[0]; kv.ModRevision != put.Header.Revision || got.Header.Revision != kv.ModRevision || kv.Version < 1 || kv.CreateRevision < 1 {
		t.Fatalf("revisions: put header %d, got %+v (header %d)", put.Header.Revision, kv, got.Header.Revision)
	}
	prev, err := a.Put(ctx, "app/one", "2", clientv3.WithPrevKV())
	if err != nil || prev.PrevKv == nil || string(prev.PrevKv.Value) != "1" || prev.Header.Revision <= put.Header.Revision {
		t.Fatalf("Put with prev_kv: %+v %v", prev, err)
	}
	// create_revision is the revision of the put that created the key,
	// version the changes since; a delete and a re-create begin again.
	life, err := b.Get(ctx, "app/one")
	if err != nil || life.Kvs[0].CreateRevision != put.Header.Revision || life.Kvs[0].Version != 2 || life.Kvs[0].ModRevision != prev.Header.Revision {
		t.Fatalf("a key's life after two puts (first at %d): %+v %v", put.Header.Revision, life, err)
	}
	if _, err := a.Delete(ctx, "app/one"); err != nil {
		t.Fatal(err)
	}
	again, err := a.Put(ctx, "app/one", "2")
	if err != nil {
		t.Fatal(err)
	}
	life, err = b.Get(ctx, "app/one")
	if err != nil || life.Kvs[0].CreateRevision != again.Header.Revision || life.Kvs[0].Version != 1 || again.Header.Revision <= prev.Header.Revision {
		t.Fatalf("a re-created key (put at %d): %+v %v", again.Header.Revision, life, err)
	}
	tx0, err := b.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("app/one"), "=", again.Header.Revision),
		clientv3.Compare(clientv3.Version("app/one"), "=", 1)).Then(clientv3.OpGet("app/one")).Commit()
	if err != nil || !tx0.Succeeded {
		t.Fatalf("Txn on create_revision and version: %+v %v", tx0, err)
	}
	for _, k := range []string{"app/two", "app/three", "apq", "ap"} {
		if _, err := a.Put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	list, err := b.Get(ctx, "app/", clientv3.WithPrefix())
	if err != nil || list.Count != 3 || len(list.Kvs) != 3 || string(list.Kvs[0].Key) != "app/one" || string(list.Kvs[2].Key) != "app/two" {
		t.Fatalf("prefix Get: %+v %v", list, err)
	}
	lim, err := b.Get(ctx, "app/", clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithKeysOnly())
	if err != nil || !lim.More || lim.Count != 3 || len(lim.Kvs) != 2 || len(lim.Kvs[0].Value) != 0 {
		t.Fatalf("prefix Get with limit and keys only: %+v %v", lim, err)
	}
	desc, err := b.Get(ctx, "app/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil || len(desc.Kvs) != 3 || string(desc.Kvs[0].Key) != "app/two" {
		t.Fatalf("prefix Get sorted descending: %+v %v", desc, err)
	}
	cnt, err := b.Get(ctx, "a", clientv3.WithRange("apz"), clientv3.WithCountOnly())
	if err != nil || cnt.Count != 5 || len(cnt.Kvs) != 0 {
		t.Fatalf("range count: %+v %v", cnt, err)
	}

	// A single-key compare-and-swap: succeeds on the version read, then
	// fails on it, and the failure branch reads the key.
	cur, err := a.Get(ctx, "app/one")
	if err != nil {
		t.Fatal(err)
	}
	rev := cur.Kvs[0].ModRevision
	tx, err := b.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("app/one"), "=", rev)).
		Then(clientv3.OpPut("app/one", "3")).Else(clientv3.OpGet("app/one")).Commit()
	if err != nil || !tx.Succeeded {
		t.Fatalf("Txn CAS: %+v %v", tx, err)
	}
	tx, err = a.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("app/one"), "=", rev)).
		Then(clientv3.OpPut("app/one", "4")).Else(clientv3.OpGet("app/one")).Commit()
	if err != nil || tx.Succeeded || string(tx.Responses[0].GetResponseRange().Kvs[0].Value) != "3" {
		t.Fatalf("Txn CAS on a stale revision: %+v %v", tx, err)
	}
	// Create if absent, the usual idiom.
	tx, err = a.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("app/new"), "=", 0)).
		Then(clientv3.OpPut("app/new", "x")).Commit()
	if err != nil || !tx.Succeeded {
		t.Fatalf("create-if-absent Txn: %+v %v", tx, err)
	}
	tx, err = b.Txn(ctx).If(clientv3.Compare(clientv3.Value("app/new"), "=", "x")).
		Then(clientv3.OpDelete("app/new", clientv3.WithPrevKV())).Commit()
	if err != nil || !tx.Succeeded || tx.Responses[0].GetResponseDeleteRange().Deleted != 1 {
		t.Fatalf("Txn delete on value: %+v %v", tx, err)
	}

	del, err := b.Delete(ctx, "app/two", clientv3.WithPrevKV())
	if err != nil || del.Deleted != 1 || string(del.PrevKvs[0].Value) != "v-app/two" {
		t.Fatalf("Delete: %+v %v", del, err)
	}
	if g, err := a.Get(ctx, "app/two"); err != nil || len(g.Kvs) != 0 {
		t.Fatalf("Get after Delete: %+v %v", g, err)
	}
	delp, err := a.Delete(ctx, "app/", clientv3.WithPrefix())
	if err != nil || delp.Deleted != 2 {
		t.Fatalf("Delete prefix: %+v %v", delp, err)
	}

	st, err := a.Status(ctx, c.etcd[0])
	if err != nil || st.Version == "" || len(st.Errors) != 0 || st.Header.MemberId == 0 {
		t.Fatalf("Status: %+v %v", st, err)
	}
	ml, err := b.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("MemberList: %+v %v", ml, err)
	}

	// The refusals, each a clear error.
	refusals := []struct {
		name string
		run  func() error
		code codes.Code
		says string
	}{
		{"multi-key Txn", func() error {
			_, err := a.Txn(ctx).If(clientv3.Compare(clientv3.Value("ap"), "=", "v-ap")).Then(clientv3.OpPut("apq", "y")).Commit()
			return err
		}, codes.InvalidArgument, "one key"},
		{"Get at a revision", func() error { _, err := a.Get(ctx, "ap", clientv3.WithRev(1)); return err }, codes.Unimplemented, "revision"},
		{"Put with a lease never granted", func() error { _, err := a.Put(ctx, "ap", "z", clientv3.WithLease(7)); return err }, codes.NotFound, "requested lease not found"},
		{"Compact", func() error { _, err := a.Compact(ctx, 1); return err }, codes.Unimplemented, "history"},
	}
	for _, r := range refusals {
		err := r.run()
		if codeOf(err) != r.code || !strings.Contains(err.Error(), r.says) {
			t.Errorf("%s: got %v (code %v), want code %v saying %q", r.name, err, codeOf(err), r.code, r.says)
		}
	}
}

func TestClientV3(t *testing.T) {
	c := startCluster(t, 3, nil)
	cfg := clientv3.Config{Logger: quiet, DialTimeout: 5 * time.Second}
	waitReady(t, cfg, c.etcd)
	clientv3Checks(t, cfg, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := clientAt(t, cfg, c.etcd[0]), clientAt(t, cfg, c.etcd[1])
	t.Run("leases", func(t *testing.T) { leaseChecks(t, ctx, a, b) })
	t.Run("watch", func(t *testing.T) { watchChecks(t, ctx, a, b) })
	t.Run("locks", func(t *testing.T) { lockChecks(t, ctx, a, b, "plain/") })
}

// clientAt is a clientv3 client of one endpoint, closed when the test ends.
func clientAt(t *testing.T, cfg clientv3.Config, ep string) *clientv3.Client {
	t.Helper()
	cfg.Endpoints = []string{ep}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
