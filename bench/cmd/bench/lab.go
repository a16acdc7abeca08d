package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caspaxos/caspaxos/internal/netlab"
)

// labCluster is a three-member cluster whose every directed peer link goes
// through a proxy of mesh (the isolation and WAN experiments).
type labCluster struct {
	*cluster
	mesh  *netlab.Mesh
	front *front // etcd only
}

func (l *labCluster) close(keep bool) {
	l.cluster.stop(keep)
	if l.front != nil {
		l.front.close()
	}
	l.mesh.Close()
}

// startCaspaxosLab starts three caspaxos nodes (default settings); node i
// reaches node j at mesh.Addr(i, j). setup runs on the mesh before the
// nodes start (to set delays); extra are more flags of caspaxos serve.
func (r *runner) startCaspaxosLab(setup func(*netlab.Mesh), extra ...string) (*labCluster, error) {
	dir, ports, peers, mesh, err := r.labNetwork("caspaxos-lab-", setup)
	if err != nil {
		return nil, err
	}
	c := &cluster{system: "caspaxos", dir: dir}
	var ms []member
	for i := range 3 {
		var members []string
		for j := range 3 {
			addr := peers[j]
			if j != i {
				addr = mesh.Addr(i, j)
			}
			members = append(members, fmt.Sprintf("n%d=%s", j+1, addr))
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		c.clients = append(c.clients, addr)
		c.metrics = append(c.metrics, "http://"+addr+"/metrics")
		ms = append(ms, member{bin: r.caspaxosBin, log: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)), args: []string{
			"serve", "--name", fmt.Sprintf("n%d", i+1), "--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--client-addr", addr, "--peer-addr", peers[i], "--cluster", strings.Join(members, ","), "--log-level", "warn"}})
		ms[i].args = append(ms[i].args, extra...)
	}
	l := &labCluster{cluster: c, mesh: mesh}
	if err := c.start(ms); err != nil {
		mesh.Close()
		return nil, err
	}
	return l, nil
}

// labNetwork makes a data directory, picks six ports (clients, then real
// peer addresses) and starts the mesh of proxies in front of the peers;
// setup runs on it before any member starts (to set delays).
func (r *runner) labNetwork(prefix string, setup func(*netlab.Mesh)) (dir string, ports []int, peers []string, mesh *netlab.Mesh, err error) {
	if dir, err = os.MkdirTemp(r.dataDir, prefix); err != nil {
		return "", nil, nil, nil, err
	}
	if ports, err = freePorts(6); err != nil {
		return "", nil, nil, nil, err
	}
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", ports[3+i]))
	}
	if mesh, err = netlab.NewMesh(peers); err != nil {
		return "", nil, nil, nil, err
	}
	setup(mesh)
	return dir, ports, peers, mesh, nil
}

// startEtcdLab starts a three-member etcd with extra flags. etcd members
// share one list of peer URLs, so a member's advertised peer URL is a
// front, which tells the connecting member by the process that owns the
// connection's other end and passes it on to that pair's proxy.
func (r *runner) startEtcdLab(setup func(*netlab.Mesh), extra ...string) (*labCluster, error) {
	dir, ports, peers, mesh, err := r.labNetwork("etcd-lab-", setup)
	if err != nil {
		return nil, err
	}
	c := &cluster{system: "etcd", dir: dir}
	fr, err := newFront(mesh, 3, c.pids)
	if err != nil {
		mesh.Close()
		return nil, err
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, fr.addr(i)))
	}
	var ms []member
	for i := range 3 {
		name := fmt.Sprintf("e%d", i+1)
		cu := fmt.Sprintf("http://127.0.0.1:%d", ports[i])
		c.clients = append(c.clients, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		ms = append(ms, member{bin: r.etcdBin, log: filepath.Join(dir, name+".log"), args: append([]string{
			"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", "http://" + peers[i], "--initial-advertise-peer-urls", "http://" + fr.addr(i),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "bench-lab", "--log-level", "warn",
		}, extra...)})
	}
	l := &labCluster{cluster: c, mesh: mesh, front: fr}
	if err := c.start(ms); err != nil {
		fr.close()
		mesh.Close()
		return nil, err
	}
	return l, nil
}

// pids returns the members' process IDs, in member order, as started so far.
func (c *cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.Process.Pid
	}
	return out
}

// front is one listener per etcd member (its advertised peer URL). A
// connection to member j from member i goes on to the mesh's link (i, j).
type front struct {
	mesh *netlab.Mesh
	lns  []net.Listener
	pids func() []int
	mu   sync.Mutex
	open map[net.Conn]struct{}
	wg   sync.WaitGroup
}

func newFront(mesh *netlab.Mesh, n int, pids func() []int) (*front, error) {
	f := &front{mesh: mesh, pids: pids, open: map[net.Conn]struct{}{}}
	for j := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, err
		}
		f.lns = append(f.lns, ln)
		f.wg.Add(1)
		go f.accept(j, ln)
	}
	return f, nil
}

func (f *front) addr(j int) string { return f.lns[j].Addr().String() }

func (f *front) accept(j int, ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go f.serve(j, c)
	}
}

func (f *front) serve(j int, c net.Conn) {
	i, err := ownerOf(c, f.pids())
	if err != nil || i == j {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", f.mesh.Addr(i, j))
	if err != nil {
		c.Close()
		return
	}
	if !f.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
	f.untrack(c, up)
}

func (f *front) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.open[c] = struct{}{}
	}
	return true
}

func (f *front) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		delete(f.open, c)
	}
}

func (f *front) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	f.mu.Lock()
	for c := range f.open {
		c.Close()
	}
	f.open = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// ownerOf returns the index in pids of the process that owns the other end
// of c (a loopback connection): it finds the socket in /proc/net/tcp by its
// address pair, then the process with that socket among its descriptors.
func ownerOf(c net.Conn, pids []int) (int, error) {
	remote := c.RemoteAddr().(*net.TCPAddr)
	local := c.LocalAddr().(*net.TCPAddr)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1, err
	}
	want := fmt.Sprintf("%s %s", hexAddr(remote), hexAddr(local))
	inode := ""
	for _, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) > 9 && fs[1]+" "+fs[2] == want {
			inode = fs[9]
			break
		}
	}
	if inode == "" {
		return -1, fmt.Errorf("no socket %s", want)
	}
	link := "socket:[" + inode + "]"
	for i, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && t == link {
				return i, nil
			}
		}
	}
	return -1, errors.New("socket owned by no member")
}

// hexAddr is an IPv4 address as /proc/net/tcp writes it.
func hexAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// etcdLabDriver drives one etcd member: a client with that member as its
// only endpoint.
type etcdLabDriver struct{ c *clientv3.Client }

func dialEtcdLab(endpoint string) (*etcdLabDriver, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	return &etcdLabDriver{c: c}, nil
}

func (d *etcdLabDriver) Get(ctx context.Context, key string) netlab.Out {
	r, err := d.c.Get(ctx, key)
	if err != nil {
		return netlab.Out{Status: netlab.Unknown}
	}
	if len(r.Kvs) == 0 {
		return netlab.Out{Status: netlab.NotFound}
	}
	n, _ := strconv.ParseInt(string(r.Kvs[0].Value), 10, 64)
	return netlab.Out{Status: netlab.OK, Value: n, Version: uint64(r.Kvs[0].ModRevision)}
}

// PutIf is a Txn on the key's mod_revision (0: absent); the Else branch
// reads the current one.
func (d *etcdLabDriver) PutIf(ctx context.Context, key string, expect uint64, value int64) netlab.Out {
	t, err := d.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(expect))).
		Then(clientv3.OpPut(key, strconv.FormatInt(value, 10))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return netlab.Out{Status: netlab.Unknown} // a Txn that was sent may have been applied
	}
	if t.Succeeded {
		return netlab.Out{Status: netlab.OK, Value: value, Version: uint64(t.Header.Revision)}
	}
	kvs := t.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return netlab.Out{Status: netlab.Mismatch}
	}
	return netlab.Out{Status: netlab.Mismatch, Version: uint64(kvs[0].ModRevision)}
}

// Incr: etcd has no server-side read-modify-write.
func (d *etcdLabDriver) Incr(context.Context, string) netlab.Out {
	return netlab.Out{Status: netlab.NotApplied}
}

// etcdLeader returns the index (by member name e1..e3) of the leader as
// the member at endpoints[0..] sees it, and the member IDs by index.
func etcdLeader(ctx context.Context, endpoints []string) (int, []uint64, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return -1, nil, err
	}
	defer c.Close()
	ml, err := c.MemberList(ctx)
	if err != nil {
		return -1, nil, err
	}
	ids := make([]uint64, len(endpoints))
	for _, m := range ml.Members {
		var i int
		if _, err := fmt.Sscanf(m.Name, "e%d", &i); err == nil && i >= 1 && i <= len(ids) {
			ids[i-1] = m.ID
		}
	}
	for _, ep := range endpoints {
		st, err := c.Status(ctx, ep)
		if err != nil || st.Leader == 0 {
			continue
		}
		for i, id := range ids {
			if id == st.Leader {
				return i, ids, nil
			}
		}
	}
	return -1, ids, errors.New("etcd: no leader known")
}

// moveEtcdLeader makes member to the leader (etcd's MoveLeader, sent to
// the current leader) and waits until every member agrees.
func moveEtcdLeader(ctx context.Context, endpoints []string, to int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		lead, ids, err := etcdLeader(ctx, endpoints)
		if err == nil && lead == to {
			return nil
		}
		if err == nil {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoints[lead]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err == nil {
				mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err = c.MoveLeader(mctx, ids[to])
				cancel()
				c.Close()
			}
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return fmt.Errorf("etcd: could not move the leader to e%d", to+1)
}
