package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/caspaxos/caspaxos/server/daemon"
)

// serveOptions are the flags of `caspaxos serve`. Most set a field of the
// node's daemon.Config directly (serveFlagFields) and take its default
// from daemon.DefaultConfig.
type serveOptions struct {
	cfg       daemon.Config
	config    string
	cluster   string
	hosts     string // cfg.HTTPAllowedHosts, comma-separated
	gc        bool   // the inverse of cfg.GC.Disabled
	logLevel  string
	logFormat string
	pprofAddr string
}

// serveFlagFields maps each flag of `caspaxos serve` that sets a field of
// daemon.Config to that field: the daemon's configuration errors name
// fields, and the command names its flags instead (flagNames).
func serveFlagFields() map[string]daemon.Field {
	return map[string]daemon.Field{
		"name":                     "Name",
		"data-dir":                 "DataDir",
		"client-addr":              "ClientAddr",
		"peer-addr":                "PeerAddr",
		"etcd-addr":                "EtcdAddr",
		"consul-addr":              "ConsulAddr",
		"cluster":                  "Cluster",
		"join":                     "Join",
		"prepare-quorum":           "PrepareQuorum",
		"accept-quorum":            "AcceptQuorum",
		"max-key-bytes":            "Limits.MaxKeyBytes",
		"max-value-bytes":          "Limits.MaxValueBytes",
		"request-timeout":          "RequestTimeout",
		"max-inflight-requests":    "Admission.MaxInflightRequests",
		"max-client-conns":         "Admission.MaxConns",
		"http-read-header-timeout": "HTTP.ReadHeaderTimeout",
		"http-read-timeout":        "HTTP.ReadTimeout",
		"http-write-timeout":       "HTTP.WriteTimeout",
		"http-idle-timeout":        "HTTP.IdleTimeout",
		"http-allowed-hosts":       "HTTPAllowedHosts",
		"auth-token-ttl":           "Auth.TokenTTL",
		"auth-staleness":           "Auth.Staleness",
		"attempt-timeout":          "Node.Proposer.AttemptTimeout",
		"read-timeout":             "Node.Proposer.ReadTimeout",
		"read-near-timeout":        "Node.Proposer.ReadNearTimeout",
		"gather-window":            "Node.Proposer.GatherWindow",
		"heartbeat":                "Transport.Heartbeat",
		"dead-after":               "Transport.DeadAfter",
		"min-free-bytes":           "Node.Space.MinFreeBytes",
		"quota-bytes":              "Node.Space.QuotaBytes",
		"sync-promises":            "Node.Acceptor.SyncPromises",
		"gc":                       "GC.Disabled",
		"gc-batch-keys":            "GC.BatchKeys",
		"gc-round-timeout":         "GC.RoundTimeout",
		"gc-retry-base":            "GC.RetryBase",
		"gc-retry-max":             "GC.RetryMax",
		"gc-sweep-interval":        "GC.SweepInterval",
		"gc-delay":                 "GC.Delay",
		"gc-orphan-delay":          "GC.OrphanDelay",
		"status-count-interval":    "Status.CountEvery",
		"idempotency-window":       "Idempotency.Window",
		"max-clock-skew":           "Idempotency.MaxClockSkew",
		"cert-file":                "TLS.CertFile",
		"key-file":                 "TLS.KeyFile",
		"trusted-ca-file":          "TLS.TrustedCAFile",
		"client-cert-auth":         "TLS.ClientCertAuth",
		"peer-cert-file":           "TLS.PeerCertFile",
		"peer-key-file":            "TLS.PeerKeyFile",
		"peer-trusted-ca-file":     "TLS.PeerTrustedCAFile",
	}
}

// flagNames names a daemon.Config field by its flag, if it has one.
func flagNames() func(daemon.Field) string {
	byField := map[daemon.Field]string{}
	for flag, field := range serveFlagFields() {
		byField[field] = "--" + flag
	}
	return func(f daemon.Field) string {
		if flag, ok := byField[f]; ok {
			return flag
		}
		return string(f)
	}
}

// Defaults of the flags that set no daemon.Config tunable: the addresses
// a node listens on unless told otherwise.
const (
	defaultClientAddr = "127.0.0.1:7070"
	defaultPeerAddr   = "127.0.0.1:7080"
)

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
	o.addFlags(cmd.Flags())
	return cmd
}

// addFlags defines the flags of `caspaxos serve` on f, bound to o.
func (o *serveOptions) addFlags(f *pflag.FlagSet) {
	def := daemon.DefaultConfig()
	c := &o.cfg
	f.StringVar(&o.config, "config", "", "config file of `flag = value` lines")
	f.StringVar(&c.Name, "name", "", "this node's name, one of --cluster (required)")
	f.StringVar(&c.DataDir, "data-dir", "", "directory of the node's durable state (required)")
	f.StringVar(&c.ClientAddr, "client-addr", defaultClientAddr, "address of the client API (gRPC and HTTP)")
	f.StringVar(&c.PeerAddr, "peer-addr", defaultPeerAddr, "address of the peer transport")
	f.StringVar(&c.EtcdAddr, "etcd-addr", "", "address of etcd's v3 gRPC API, for etcdctl and clientv3 (docs/etcd.md; same TLS and permissions as --client-addr; empty: off)")
	f.StringVar(&c.ConsulAddr, "consul-addr", def.ConsulAddr, "address of Consul's KV HTTP API, for Consul's api package and consul kv (docs/consul.md; same TLS and permissions as --client-addr; empty: off)")
	f.StringVar(&o.cluster, "cluster", "", "initial members as NAME=PEER_ADDR,... (required unless --join)")
	f.BoolVar(&c.Join, "join", false, "wait to be added to a running cluster with `caspaxos members add NAME=PEER_ADDR` (the data directory gets a fresh incarnation: a replaced disk is a new node ID)")
	f.IntVar(&c.PrepareQuorum, "prepare-quorum", 0, "acceptors a prepare needs (0: majority)")
	f.IntVar(&c.AcceptQuorum, "accept-quorum", 0, "acceptors an accept needs (0: majority); prepare + accept must exceed the members")
	f.IntVar(&c.Limits.MaxKeyBytes, "max-key-bytes", def.Limits.MaxKeyBytes, "largest key accepted")
	f.IntVar(&c.Limits.MaxValueBytes, "max-value-bytes", def.Limits.MaxValueBytes, fmt.Sprintf("largest value accepted (at most %d MiB)", daemon.MaxValueBytesLimit>>20))
	f.DurationVar(&c.RequestTimeout, "request-timeout", def.RequestTimeout, "deadline of a client request")
	f.DurationVar(&c.Idempotency.Window, "idempotency-window", def.Idempotency.Window, "how long a key remembers a write's request ID; an older retry is refused")
	f.DurationVar(&c.Idempotency.MaxClockSkew, "max-clock-skew", def.Idempotency.MaxClockSkew, "bound on clock skew between nodes and clients")
	f.IntVar(&c.Admission.MaxInflightRequests, "max-inflight-requests", def.Admission.MaxInflightRequests, "client operations the node runs at once (HTTP, gRPC and Batch ops together); one past it is refused with the code overloaded (HTTP 429, gRPC RESOURCE_EXHAUSTED), nothing applied")
	f.IntVar(&c.Admission.MaxConns, "max-client-conns", def.Admission.MaxConns, "client connections open at once; one past it is closed as soon as it is accepted")
	f.DurationVar(&c.HTTP.ReadHeaderTimeout, "http-read-header-timeout", def.HTTP.ReadHeaderTimeout, "an HTTP client that has not sent its request's headers by then is cut off")
	f.DurationVar(&c.HTTP.ReadTimeout, "http-read-timeout", def.HTTP.ReadTimeout, "an HTTP client that has not sent its whole request, body included, by then is cut off")
	f.DurationVar(&c.HTTP.WriteTimeout, "http-write-timeout", def.HTTP.WriteTimeout, "an HTTP answer not written by then (from the end of the request's headers) is cut off")
	f.DurationVar(&c.HTTP.IdleTimeout, "http-idle-timeout", def.HTTP.IdleTimeout, "an idle kept-alive HTTP connection is closed after this")
	f.StringVar(&o.hosts, "http-allowed-hosts", "", "host names, comma-separated, that a browser may reach the client port by over plain HTTP, besides IP addresses, localhost, *.localhost and the hosts of --client-addr and of the client address given to the members (a DNS rebinding guard; * allows any)")
	f.DurationVar(&c.Auth.TokenTTL, "auth-token-ttl", def.Auth.TokenTTL, "life of a token from a login (once auth is enabled)")
	f.DurationVar(&c.Auth.Staleness, "auth-staleness", def.Auth.Staleness, "age of the cached users and roles a request is checked against: a change made on another node takes effect here within it")
	p := &c.Node.Proposer
	f.DurationVar(&p.AttemptTimeout, "attempt-timeout", def.Node.Proposer.AttemptTimeout, "how long one protocol round waits for a quorum")
	f.DurationVar(&p.ReadTimeout, "read-timeout", def.Node.Proposer.ReadTimeout, "how long a fast-path read waits before it falls back")
	f.DurationVar(&p.ReadNearTimeout, "read-near-timeout", def.Node.Proposer.ReadNearTimeout, "how long a fast-path read waits for the read quorum it asks first before it asks the other acceptors too")
	f.DurationVar(&p.GatherWindow, "gather-window", def.Node.Proposer.GatherWindow, "how long a key written by several clients at once holds its next batch for the clients just answered, so that their next changes commit in the same round (0: the default; negative: never hold)")
	f.DurationVar(&c.Transport.Heartbeat, "heartbeat", def.Transport.Heartbeat, "how often an idle peer link says it is alive")
	f.DurationVar(&c.Transport.DeadAfter, "dead-after", def.Transport.DeadAfter, "silence after which a peer counts as unreachable")
	f.Int64Var(&c.Node.Space.MinFreeBytes, "min-free-bytes", def.Node.Space.MinFreeBytes, "refuse new writes (puts, creates, cas, incr; not gets or deletes) with no_space while the data directory's filesystem has less free (-1: no check)")
	f.Int64Var(&c.Node.Space.QuotaBytes, "quota-bytes", def.Node.Space.QuotaBytes, "refuse new writes with no_space while the store's files take more than this, like etcd's --quota-backend-bytes (0: no quota)")
	f.BoolVar(&c.Node.Acceptor.SyncPromises, "sync-promises", def.Node.Acceptor.SyncPromises, "sync every promise before its reply, as before PROTOCOL.md §12: a cold write then waits for two sync rounds instead of one (an escape hatch; safe to switch either way across a restart)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "if set, serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	tl := &c.TLS
	f.StringVar(&tl.CertFile, "cert-file", "", "PEM certificate of the client port: with --key-file, gRPC and HTTP are served over TLS only (reloaded when the file changes)")
	f.StringVar(&tl.KeyFile, "key-file", "", "PEM private key of --cert-file")
	f.StringVar(&tl.TrustedCAFile, "trusted-ca-file", "", "PEM CA certificates that sign client certificates (with --client-cert-auth)")
	f.BoolVar(&tl.ClientCertAuth, "client-cert-auth", false, "require a client certificate signed by a CA of --trusted-ca-file")
	f.StringVar(&tl.PeerCertFile, "peer-cert-file", "", "PEM certificate of the peer port, naming this node (DNS SAN or CN = --name): with --peer-key-file and --peer-trusted-ca-file, peers speak mutual TLS and refuse non-members")
	f.StringVar(&tl.PeerKeyFile, "peer-key-file", "", "PEM private key of --peer-cert-file")
	f.StringVar(&tl.PeerTrustedCAFile, "peer-trusted-ca-file", "", "PEM CA certificates that sign the members' peer certificates")
	g := &c.GC
	f.BoolVar(&o.gc, "gc", !def.GC.Disabled, "run deletion GC: collect the tombstones deletes leave, once every node is reachable (--gc=false: they stay)")
	f.IntVar(&g.BatchKeys, "gc-batch-keys", def.GC.BatchKeys, "keys one GC round collects")
	f.DurationVar(&g.RoundTimeout, "gc-round-timeout", def.GC.RoundTimeout, "deadline of one GC round")
	f.DurationVar(&g.RetryBase, "gc-retry-base", def.GC.RetryBase, "first wait before a GC round that could not finish is retried (doubling, jittered)")
	f.DurationVar(&g.RetryMax, "gc-retry-max", def.GC.RetryMax, "longest wait before a GC round that could not finish (a node down) is retried")
	f.DurationVar(&g.SweepInterval, "gc-sweep-interval", def.GC.SweepInterval, "time between scans of the store for tombstones whose GC a crash lost (first at start; -1ns: never)")
	f.DurationVar(&g.Delay, "gc-delay", def.GC.Delay, "how long a deleted key waits before GC takes it")
	f.DurationVar(&g.OrphanDelay, "gc-orphan-delay", def.GC.OrphanDelay, "how long a tombstone a sweep found, of a key homed on another node, waits before this node collects it itself")
	f.DurationVar(&c.Status.CountEvery, "status-count-interval", def.Status.CountEvery, "time between counts of the store's registers and tombstones for status (each a scan of the local store; the first at start)")
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
		return flagError(err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "caspaxos node %s serving clients on %s (pid %d)\n", o.cfg.Name, d.ClientAddr(), os.Getpid())
	select {
	case <-cmd.Context().Done():
		return d.Stop()
	case <-d.Fatal():
		_ = d.Stop()
		return fmt.Errorf("node %s stopped: %w", o.cfg.Name, d.FatalErr())
	case <-d.Removed():
		err := d.Stop()
		fmt.Fprintf(cmd.ErrOrStderr(), "caspaxos node %s was removed from the cluster and stopped; to add it again, start it with --join on an empty data directory\n", o.cfg.Name)
		return err
	}
}

func (o *serveOptions) daemonConfig(log *slog.Logger) (daemon.Config, error) {
	members, err := daemon.ParseCluster(o.cluster)
	if err != nil {
		return daemon.Config{}, err
	}
	cfg := o.cfg
	cfg.Cluster, cfg.GC.Disabled, cfg.Logger = members, !o.gc, log
	cfg.HTTPAllowedHosts = nil
	for _, h := range strings.Split(o.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.HTTPAllowedHosts = append(cfg.HTTPAllowedHosts, h)
		}
	}
	// A zero limit would mean the default to the daemon; on the command
	// line it is a mistake.
	if cfg.Limits.MaxKeyBytes <= 0 || cfg.Limits.MaxValueBytes <= 0 {
		return cfg, errors.New("--max-key-bytes and --max-value-bytes must be positive")
	}
	return cfg, flagError(cfg.Validate())
}

// flagError names the fields of a daemon configuration error by their
// flags; other errors pass unchanged.
func flagError(err error) error {
	var ce *daemon.ConfigError
	if errors.As(err, &ce) {
		return errors.New(ce.Text(flagNames()))
	}
	return err
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
