package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caspaxos/caspaxos/internal/benchload"
)

// etcdDriver drives etcd through its official Go client.
type etcdDriver struct {
	c *clientv3.Client
}

// dialEtcd returns conns drivers, each its own client. With toLeader, every
// client connects to the leader only (etcdLeaderEndpoint), as etcd's performance
// docs advise for throughput: a follower would forward every write to the
// leader and ask it for a read index on every linearizable read. Without
// it, each client is over all endpoints, starting at a different one (the
// client balances its requests over them). With tlsCfg (the CA and a
// client certificate) they connect over TLS.
func dialEtcd(ctx context.Context, endpoints []string, conns int, tlsCfg *tls.Config, toLeader bool) ([]benchload.Driver, func(), error) {
	if tlsCfg != nil {
		var eps []string
		for _, e := range endpoints {
			eps = append(eps, "https://"+e)
		}
		endpoints = eps
	}
	if toLeader {
		leader, err := etcdLeaderEndpoint(ctx, endpoints, tlsCfg)
		if err != nil {
			return nil, nil, err
		}
		endpoints = []string{leader}
	}
	var out []benchload.Driver
	var clients []*clientv3.Client
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for i := range conns {
		eps := append(append([]string{}, endpoints[i%len(endpoints):]...), endpoints[:i%len(endpoints)]...)
		cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
		if tlsCfg != nil {
			cfg.TLS = tlsCfg.Clone()
		}
		c, err := clientv3.New(cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, c)
		out = append(out, &etcdDriver{c: c})
	}
	return out, closeAll, nil
}

func (d *etcdDriver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, string(value))
	return err
}

// Get is linearizable: clientv3's default consistency.
func (d *etcdDriver) Get(ctx context.Context, key string) error {
	_, err := d.c.Get(ctx, key)
	return err
}

// Increment is the usual optimistic read-modify-write: read the counter and
// its mod_revision, then a Txn that writes n+1 only if the mod_revision is
// unchanged; a refused Txn returns the fresh value (Else branch) and is
// retried with it.
func (d *etcdDriver) Increment(ctx context.Context, key string) (int, error) {
	r, err := d.c.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	n, rev := counterOf(r.Kvs)
	for conflicts := 0; ; conflicts++ {
		t, err := d.c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, strconv.FormatInt(n+1, 10))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return conflicts, err
		}
		if t.Succeeded {
			return conflicts, nil
		}
		n, rev = counterOf(t.Responses[0].GetResponseRange().Kvs)
	}
}

func (d *etcdDriver) Counter(ctx context.Context, key string) (int64, error) {
	r, err := d.c.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	n, _ := counterOf(r.Kvs)
	return n, nil
}

// counterOf parses a counter and returns its mod_revision (0: absent).
func counterOf(kvs []*mvccpb.KeyValue) (int64, int64) {
	if len(kvs) == 0 {
		return 0, 0
	}
	n, _ := strconv.ParseInt(string(kvs[0].Value), 10, 64)
	return n, kvs[0].ModRevision
}

// etcdLeaderWait bounds the wait for a fresh cluster to elect a leader.
const etcdLeaderWait = 30 * time.Second

// etcdLeaderEndpoint returns the endpoint of the member that leads now: the one
// whose Status names itself as leader. It waits for an election, up to
// etcdLeaderWait.
func etcdLeaderEndpoint(ctx context.Context, endpoints []string, tlsCfg *tls.Config) (string, error) {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if tlsCfg != nil {
		cfg.TLS = tlsCfg.Clone()
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, etcdLeaderWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, ep := range endpoints {
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := c.Status(sctx, ep)
			scancel()
			switch {
			case err != nil:
				last = err
			case st.Leader != 0 && st.Leader == st.Header.MemberId:
				return ep, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no etcd member leads after %s (last error: %v)", etcdLeaderWait, last)
		case <-tick.C:
		}
	}
}
