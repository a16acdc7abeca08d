package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/internal/netlab"
)

// labFlags are the flags the isolation and wan commands share.
type labFlags struct {
	systems          string
	out              string
	etcdBin, caspBin string
	dataDir          string
	keep             bool
	opTimeout        time.Duration
	checkTimeout     time.Duration
}

func (l *labFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.systems, "systems", "etcd,caspaxos", "systems to run, in this order")
	fs.StringVar(&l.out, "out", "results", "directory for the JSON and HTML report")
	fs.StringVar(&l.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&l.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.StringVar(&l.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (a real disk)")
	fs.BoolVar(&l.keep, "keep", false, "keep the clusters' data directories and logs")
	fs.DurationVar(&l.opTimeout, "op-timeout", time.Second, "deadline of each client operation")
	fs.DurationVar(&l.checkTimeout, "check-timeout", time.Minute, "how long Porcupine may take per history")
}

func (l *labFlags) systemList() ([]string, error) {
	systems := strings.Split(l.systems, ",")
	for _, s := range systems {
		if s != "etcd" && s != "caspaxos" {
			return nil, fmt.Errorf("unknown system %q (want etcd, caspaxos)", s)
		}
	}
	return systems, nil
}

// labRunner builds the binaries and returns a runner for lab clusters.
func (l *labFlags) runner(ctx context.Context, stderr io.Writer) (*runner, error) {
	if err := os.MkdirAll(l.out, 0o755); err != nil {
		return nil, err
	}
	r := &runner{opts: &options{etcdBin: l.etcdBin, caspBin: l.caspBin}, dataDir: l.dataDir, progress: newProgress(stderr)}
	return r, r.buildBinaries(ctx, stderr)
}

// loadAvg is /proc/loadavg's first three fields: the machine is shared.
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// labClients dials one driver per client: for caspaxos an incr client and a
// get+put client per node, for etcd a get+put client per member, each
// connected to its own node only. It returns the clients and a closer.
func labClients(system string, addrs []string, prefix string) ([]*netlab.Client, func(), error) {
	var clients []*netlab.Client
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for i, addr := range addrs {
		loops := []netlab.Loop{netlab.LoopIncr, netlab.LoopGetPut}
		if system == "etcd" {
			loops = []netlab.Loop{netlab.LoopGetPut}
		}
		for _, loop := range loops {
			var d netlab.Driver
			var err error
			if system == "etcd" {
				var ed *etcdLabDriver
				ed, err = dialEtcdLab(addr)
				if err == nil {
					d, closers = ed, append(closers, func() { ed.c.Close() })
				}
			} else {
				var cd *netlab.CaspaxosDriver
				cd, err = netlab.DialCaspaxos(addr)
				if err == nil {
					d, closers = cd, append(closers, func() { cd.Close() })
				}
			}
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			name := fmt.Sprintf("%s %s", nodeName(system, i), loop)
			key := fmt.Sprintf("%s/%s/%s", prefix, nodeName(system, i), strings.ReplaceAll(string(loop), "+", "-"))
			clients = append(clients, netlab.NewClient(name, i, loop, key, d))
		}
	}
	return clients, closeAll, nil
}

func nodeName(system string, i int) string {
	if system == "etcd" {
		return fmt.Sprintf("e%d", i+1)
	}
	return fmt.Sprintf("n%d", i+1)
}

// labReady waits until a write through every node succeeds (and, for
// caspaxos, every node reaches every peer).
func labReady(ctx context.Context, l *labCluster, clients []*netlab.Client) error {
	if l.system == "caspaxos" {
		if err := l.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, l.clients, nil) }); err != nil {
			return err
		}
	}
	for _, c := range clients {
		if c.Loop != netlab.LoopGetPut {
			continue
		}
		if err := l.waitReady(ctx, func(ctx context.Context) error {
			if out := c.Probe(ctx); out.Status != netlab.OK && out.Status != netlab.NotFound {
				return errors.New("a read through " + c.Name + " failed")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// check runs Porcupine over the clients' history.
func checkHistory(clients []*netlab.Client, timeout time.Duration) string {
	return netlab.Check(netlab.History(clients), timeout)
}
