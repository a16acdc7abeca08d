package benchload

import (
	"context"
	"errors"
	"strconv"

	"github.com/caspaxos/caspaxos/client"
)

// CaspaxosDriver drives a caspaxos cluster through the Go client.
type CaspaxosDriver struct {
	c *client.Client
}

// DialCaspaxos returns conns drivers, each its own client of base (its
// TLS among it) whose endpoint list starts at a different node, so the
// load spreads over the nodes.
func DialCaspaxos(base client.Config, conns int) ([]Driver, func(), error) {
	endpoints := base.Endpoints
	if len(endpoints) == 0 || conns <= 0 {
		return nil, nil, errors.New("caspaxos/benchload: need endpoints and at least one connection")
	}
	var out []Driver
	var clients []*client.Client
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for i := range conns {
		eps := append(append([]string{}, endpoints[i%len(endpoints):]...), endpoints[:i%len(endpoints)]...)
		cfg := base
		cfg.Endpoints = eps
		c, err := client.New(cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, c)
		out = append(out, &CaspaxosDriver{c: c})
	}
	return out, closeAll, nil
}

// Put implements Driver.
func (d *CaspaxosDriver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, value)
	return err
}

// Get implements Driver.
func (d *CaspaxosDriver) Get(ctx context.Context, key string) error {
	_, err := d.c.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	return err
}

// Increment implements Driver: one atomic increment, never a conflict.
func (d *CaspaxosDriver) Increment(ctx context.Context, key string) (int, error) {
	_, _, err := d.c.Increment(ctx, key, 1)
	return 0, err
}

// Counter implements Driver.
func (d *CaspaxosDriver) Counter(ctx context.Context, key string) (int64, error) {
	v, err := d.c.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(v.Data), 10, 64)
}
