package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/daemon"
	"github.com/caspaxos/caspaxos/server/node"
	"github.com/caspaxos/caspaxos/server/proposer"
)

// serveOptions are the flags of `caspaxos serve`.
type serveOptions struct {
	config        string
	name          string
	dataDir       string
	clientAddr    string
	peerAddr      string
	cluster       string
	join          bool
	prepareQuorum int
	acceptQuorum  int
	maxKeyBytes   int
	maxValueBytes int
	requestTO     time.Duration
	maxInflight   int
	maxConns      int
	http          clientapi.HTTPTimeouts
	attemptTO     time.Duration
	readTO        time.Duration
	readNearTO    time.Duration
	gather        time.Duration
	heartbeat     time.Duration
	deadAfter     time.Duration
	logLevel      string
	logFormat     string
	pprofAddr     string
	minFreeBytes  int64
	quotaBytes    int64
	gc            gcFlags
}

// gcFlags are the deletion GC flags of `caspaxos serve`.
type gcFlags struct {
	enabled       bool
	batchKeys     int
	roundTO       time.Duration
	retryBase     time.Duration
	retryMax      time.Duration
	sweepInterval time.Duration
	delay         time.Duration
	orphanDelay   time.Duration
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one caspaxos node",
		Long: `Run one caspaxos node: an acceptor with durable storage, a proposer, the
peer transport, and the client API (gRPC and HTTP/JSON on --client-addr,
Prometheus metrics on /metrics).

Every flag can also be set as an environment variable CASPAXOS_<FLAG>
(upper case, dashes as underscores: CASPAXOS_DATA_DIR) or in the file named
by --config, one "flag = value" per line. The command line wins over the
environment, which wins over the file.

The node stops cleanly on SIGINT or SIGTERM. It exits with an error if its
storage fails a write or a sync (fail-stop).`,
		Example: `  caspaxos serve --name n1 --data-dir /var/lib/caspaxos \
    --client-addr 0.0.0.0:7070 --peer-addr 10.0.0.1:7080 \
    --cluster n1=10.0.0.1:7080,n2=10.0.0.2:7080,n3=10.0.0.3:7080

  CASPAXOS_NAME=n2 CASPAXOS_DATA_DIR=/data caspaxos serve --config cluster.conf`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf("serve takes no arguments, got %q", args)}
			}
			return nil
		},
		RunE: o.run,
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config file of `flag = value` lines")
	f.StringVar(&o.name, "name", "", "this node's name, one of --cluster (required)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory of the node's durable state (required)")
	f.StringVar(&o.clientAddr, "client-addr", "127.0.0.1:7070", "address of the client API (gRPC and HTTP)")
	f.StringVar(&o.peerAddr, "peer-addr", "127.0.0.1:7080", "address of the peer transport")
	f.StringVar(&o.cluster, "cluster", "", "initial members as NAME=PEER_ADDR,... (required unless --join)")
	f.BoolVar(&o.join, "join", false, "wait to be added to a running cluster with `caspaxos members add NAME=PEER_ADDR` (the data directory gets a fresh incarnation: a replaced disk is a new node ID)")
	f.IntVar(&o.prepareQuorum, "prepare-quorum", 0, "acceptors a prepare needs (0: majority)")
	f.IntVar(&o.acceptQuorum, "accept-quorum", 0, "acceptors an accept needs (0: majority); prepare + accept must exceed the members")
	f.IntVar(&o.maxKeyBytes, "max-key-bytes", 4<<10, "largest key accepted")
	f.IntVar(&o.maxValueBytes, "max-value-bytes", 1<<20, "largest value accepted (at most 16 MiB)")
	f.DurationVar(&o.requestTO, "request-timeout", 5*time.Second, "deadline of a client request")
	f.IntVar(&o.maxInflight, "max-inflight-requests", clientapi.DefaultMaxInflightRequests, "client operations the node runs at once (HTTP, gRPC and Batch ops together); one past it is refused with the code overloaded (HTTP 429, gRPC RESOURCE_EXHAUSTED), nothing applied")
	f.IntVar(&o.maxConns, "max-client-conns", clientapi.DefaultMaxClientConns, "client connections open at once; one past it is closed as soon as it is accepted")
	f.DurationVar(&o.http.ReadHeaderTimeout, "http-read-header-timeout", clientapi.DefaultHTTPReadHeaderTimeout, "an HTTP client that has not sent its request's headers by then is cut off")
	f.DurationVar(&o.http.ReadTimeout, "http-read-timeout", clientapi.DefaultHTTPReadTimeout, "an HTTP client that has not sent its whole request, body included, by then is cut off")
	f.DurationVar(&o.http.WriteTimeout, "http-write-timeout", clientapi.DefaultHTTPWriteTimeout, "an HTTP answer not written by then (from the end of the request's headers) is cut off")
	f.DurationVar(&o.http.IdleTimeout, "http-idle-timeout", clientapi.DefaultHTTPIdleTimeout, "an idle kept-alive HTTP connection is closed after this")
	f.DurationVar(&o.attemptTO, "attempt-timeout", 500*time.Millisecond, "how long one protocol round waits for a quorum")
	f.DurationVar(&o.readTO, "read-timeout", 100*time.Millisecond, "how long a fast-path read waits before it falls back")
	f.DurationVar(&o.readNearTO, "read-near-timeout", 10*time.Millisecond, "how long a fast-path read waits for the read quorum it asks first before it asks the other acceptors too")
	f.DurationVar(&o.gather, "gather-window", proposer.DefaultGatherWindow, "how long a key written by several clients at once holds its next batch for the clients just answered, so that their next changes commit in the same round (0: the default; negative: never hold)")
	f.DurationVar(&o.heartbeat, "heartbeat", 50*time.Millisecond, "how often an idle peer link says it is alive")
	f.DurationVar(&o.deadAfter, "dead-after", 300*time.Millisecond, "silence after which a peer counts as unreachable")
	f.Int64Var(&o.minFreeBytes, "min-free-bytes", node.DefaultMinFreeBytes, "refuse new writes (puts, creates, cas, incr; not gets or deletes) with no_space while the data directory's filesystem has less free (-1: no check)")
	f.Int64Var(&o.quotaBytes, "quota-bytes", 0, "refuse new writes with no_space while the store's files take more than this, like etcd's --quota-backend-bytes (0: no quota)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "if set, serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	f.BoolVar(&o.gc.enabled, "gc", true, "run deletion GC: collect the tombstones deletes leave, once every node is reachable (--gc=false: they stay)")
	f.IntVar(&o.gc.batchKeys, "gc-batch-keys", 1024, "keys one GC round collects")
	f.DurationVar(&o.gc.roundTO, "gc-round-timeout", 10*time.Second, "deadline of one GC round")
	f.DurationVar(&o.gc.retryBase, "gc-retry-base", 100*time.Millisecond, "first wait before a GC round that could not finish is retried (doubling, jittered)")
	f.DurationVar(&o.gc.retryMax, "gc-retry-max", 5*time.Second, "longest wait before a GC round that could not finish (a node down) is retried")
	f.DurationVar(&o.gc.sweepInterval, "gc-sweep-interval", time.Hour, "time between scans of the store for tombstones whose GC a crash lost (first at start; -1ns: never)")
	f.DurationVar(&o.gc.delay, "gc-delay", time.Second, "how long a deleted key waits before GC takes it")
	f.DurationVar(&o.gc.orphanDelay, "gc-orphan-delay", 10*time.Minute, "how long a tombstone a sweep found, of a key homed on another node, waits before this node collects it itself")
	return cmd
}

func (o *serveOptions) run(cmd *cobra.Command, _ []string) error {
	if !cmd.Flags().Changed("config") {
		if v, ok := os.LookupEnv("CASPAXOS_CONFIG"); ok {
			o.config = v
		}
	}
	if err := applySources(cmd, os.LookupEnv, o.config); err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}
	log, err := o.logger(cmd)
	if err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}
	cfg, err := o.daemonConfig(log)
	if err != nil {
		return &usageError{cmd: cmd.CommandPath(), err: err}
	}
	if o.pprofAddr != "" {
		stopPprof, err := startPprof(o.pprofAddr)
		if err != nil {
			return &usageError{cmd: cmd.CommandPath(), err: err}
		}
		defer stopPprof()
	}
	d, err := daemon.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "caspaxos node %s serving clients on %s (pid %d)\n", o.name, d.ClientAddr(), os.Getpid())
	select {
	case <-cmd.Context().Done():
		return d.Stop()
	case <-d.Fatal():
		_ = d.Stop()
		return fmt.Errorf("node %s stopped: %w", o.name, d.FatalErr())
	case <-d.Removed():
		err := d.Stop()
		fmt.Fprintf(cmd.ErrOrStderr(), "caspaxos node %s was removed from the cluster and stopped; to add it again, start it with --join on an empty data directory\n", o.name)
		return err
	}
}

func (o *serveOptions) daemonConfig(log *slog.Logger) (daemon.Config, error) {
	members, err := daemon.ParseCluster(o.cluster)
	if err != nil {
		return daemon.Config{}, err
	}
	cfg := daemon.Config{
		Name: o.name, DataDir: o.dataDir, ClientAddr: o.clientAddr, PeerAddr: o.peerAddr, Cluster: members, Join: o.join,
		PrepareQuorum: o.prepareQuorum, AcceptQuorum: o.acceptQuorum,
		RequestTimeout: o.requestTO, MaxInflightRequests: o.maxInflight, MaxClientConns: o.maxConns, HTTP: o.http, AttemptTimeout: o.attemptTO, ReadTimeout: o.readTO, ReadNearTimeout: o.readNearTO, GatherWindow: o.gather,
		Heartbeat: o.heartbeat, DeadAfter: o.deadAfter, Logger: log,
		Space: node.SpaceConfig{MinFreeBytes: o.minFreeBytes, QuotaBytes: o.quotaBytes},
		GC: daemon.GCOptions{Disabled: !o.gc.enabled, BatchKeys: o.gc.batchKeys, RoundTimeout: o.gc.roundTO, RetryBase: o.gc.retryBase,
			RetryMax: o.gc.retryMax, SweepInterval: o.gc.sweepInterval, Delay: o.gc.delay, OrphanDelay: o.gc.orphanDelay},
	}
	cfg.Limits.MaxKeyBytes, cfg.Limits.MaxValueBytes = o.maxKeyBytes, o.maxValueBytes
	if o.maxKeyBytes <= 0 || o.maxValueBytes <= 0 {
		return cfg, errors.New("--max-key-bytes and --max-value-bytes must be positive")
	}
	return cfg, cfg.Validate()
}

func (o *serveOptions) logger(cmd *cobra.Command) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}
