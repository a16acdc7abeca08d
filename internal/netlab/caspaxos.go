package netlab

import (
	"context"
	"errors"
	"strconv"

	"github.com/caspaxos/caspaxos/client"
)

// CaspaxosDriver drives one caspaxos node through the Go client (the gRPC
// API; the HTTP API runs the same operations).
type CaspaxosDriver struct{ C *client.Client }

// DialCaspaxos returns a driver connected to the node at addr only.
func DialCaspaxos(addr string) (*CaspaxosDriver, error) {
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		return nil, err
	}
	return &CaspaxosDriver{C: c}, nil
}

// Close closes the client.
func (d *CaspaxosDriver) Close() error { return d.C.Close() }

func (d *CaspaxosDriver) Get(ctx context.Context, key string) Out {
	v, err := d.C.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return Out{Status: NotFound}
	}
	if err != nil {
		return Out{Status: classify(err)}
	}
	n, _ := strconv.ParseInt(string(v.Data), 10, 64)
	return Out{Status: OK, Value: n, Version: v.Version}
}

func (d *CaspaxosDriver) PutIf(ctx context.Context, key string, expect uint64, value int64) Out {
	ver, err := d.C.CompareAndSwap(ctx, key, expect, []byte(strconv.FormatInt(value, 10)))
	var vm *client.VersionMismatchError
	switch {
	case err == nil:
		return Out{Status: OK, Value: value, Version: ver}
	case errors.As(err, &vm):
		return Out{Status: Mismatch, Version: vm.Current}
	}
	return Out{Status: classify(err)}
}

func (d *CaspaxosDriver) Incr(ctx context.Context, key string) Out {
	n, ver, err := d.C.Increment(ctx, key, 1)
	if err != nil {
		return Out{Status: classify(err)}
	}
	return Out{Status: OK, Value: n, Version: ver}
}

// classify: refusals before anything was applied, else unknown.
func classify(err error) Status {
	if errors.Is(err, client.ErrNoQuorum) || errors.Is(err, client.ErrUnavailable) {
		return NotApplied
	}
	return Unknown
}
