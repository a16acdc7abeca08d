package main

import (
	"context"
	"crypto/tls"
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

// dialEtcd returns conns drivers, each its own client over all endpoints
// (the client balances its requests over them). With tlsCfg (the CA and a
// client certificate) they connect over TLS.
func dialEtcd(endpoints []string, conns int, tlsCfg *tls.Config) ([]benchload.Driver, func(), error) {
	if tlsCfg != nil {
		var eps []string
		for _, e := range endpoints {
			eps = append(eps, "https://"+e)
		}
		endpoints = eps
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
