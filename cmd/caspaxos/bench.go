package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/benchload"
	"github.com/caspaxos/caspaxos/internal/certs"
)

// benchOptions are the flags of `caspaxos bench`.
type benchOptions struct {
	workloads, clients string
	duration, warmup   time.Duration
	conns, keys, value int
	prefix             string
	seed               uint64
	mode               string // grpc (the Go client), http (plain net/http) or h2c (net/http over HTTP/2 cleartext)
	noRequestIDs       bool   // the Go client's writes carry no request IDs (client.Config.NoRequestIDs)
}

func newBenchCmd(o *clientOptions) *cobra.Command {
	b := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running cluster and report throughput and latency",
		Long: `Run the workloads of the benchmark suite (bench/ in the source tree) against
a running cluster at --endpoints: closed-loop clients for --duration after an
unmeasured --warmup, per workload and number of clients, then print ops/s,
latency percentiles (p50, p90, p99, p99.9) and errors.

Workloads: put (--value-bytes values over --keys keys), create (every put to
a key never written before: cold writes), get (linearizable,
keys preloaded first), incr (increments of one hot key; the final counter is
checked against the successful increments), mixed (50% get, 50% put), zipf
(mixed with zipfian key choice, YCSB's 0.99).

It writes keys under --key-prefix: do not point it at data you care about.
--mode http drives the HTTP API instead of the Go client, as a curl or
Python user would: plain net/http, one request per operation over
keep-alive connections, requests spread round robin over the nodes (each
connection starting at a different one); incr is POST ?incr=1.
--mode h2c does the same over HTTP/2 cleartext with prior knowledge (as
curl --http2-prior-knowledge): the requests of each of --conns clients
share one connection per node.

Every run is bounded: it stops after warm-up plus duration per cell.`,
		Example: `  caspaxos bench                                  # put at 1, 16, 64 clients
  caspaxos bench --workloads put,get,incr --clients 64 --duration 30s
  caspaxos --endpoints 10.0.0.1:7070,10.0.0.2:7070 bench -o json
  caspaxos bench --mode http --workloads put,get,incr
  caspaxos bench --mode h2c --workloads put --clients 64
  caspaxos bench --workloads incr --clients 64 --no-request-ids   # what exactly-once costs`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return b.run(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&b.workloads, "workloads", "put", "comma-separated: put, create, get, incr, mixed, zipf, or all")
	f.StringVar(&b.clients, "clients", "1,16,64", "comma-separated numbers of concurrent clients")
	f.DurationVar(&b.duration, "duration", 10*time.Second, "measured time per cell")
	f.DurationVar(&b.warmup, "warmup", 2*time.Second, "unmeasured time before each measurement")
	f.IntVar(&b.conns, "conns", 4, "client connections (at most one per client)")
	f.IntVar(&b.keys, "keys", 10000, "distinct keys")
	f.IntVar(&b.value, "value-bytes", 256, "size of a put's value")
	f.StringVar(&b.prefix, "key-prefix", "bench/", "prefix of every key written")
	f.Uint64Var(&b.seed, "seed", 1, "seed of the clients' key choice")
	f.BoolVar(&b.noRequestIDs, "no-request-ids", false, "--mode grpc: the Go client's writes carry no request IDs (not exactly-once), to measure what the IDs cost")
	f.StringVar(&b.mode, "mode", "grpc", "grpc (the Go client), http (the HTTP API through plain net/http, HTTP/1.1) or h2c (the same over HTTP/2 cleartext)")
	return cmd
}

func (b *benchOptions) run(cmd *cobra.Command, o *clientOptions) error {
	path := cmd.CommandPath()
	workloads, err := benchload.ParseWorkloads(b.workloads)
	if err != nil {
		return usagef(path, "--workloads: %v", err)
	}
	clients, err := benchload.ParseInts(b.clients)
	if err != nil {
		return usagef(path, "--clients: %v", err)
	}
	if b.duration <= 0 || b.warmup < 0 || b.conns <= 0 || b.keys <= 0 || b.value <= 0 {
		return usagef(path, "--duration, --conns, --keys and --value-bytes must be positive, --warmup not negative")
	}
	if b.mode != "grpc" && b.mode != "http" && b.mode != "h2c" {
		return usagef(path, "--mode %q: want grpc, http or h2c", b.mode)
	}
	if b.noRequestIDs && b.mode != "grpc" {
		return usagef(path, "--no-request-ids is for --mode grpc (the HTTP modes send no request IDs)")
	}
	if o.output != "plain" && o.output != "json" {
		return usagef(path, "--output %q: want plain or json", o.output)
	}
	endpoints, err := o.endpointList(path)
	if err != nil {
		return err
	}
	var results []*benchload.Result
	errOut := cmd.ErrOrStderr()
	for _, w := range workloads {
		for _, c := range clients {
			drivers, closeAll, err := b.dial(o, endpoints, min(b.conns, c))
			if err != nil {
				return err
			}
			cfg := benchload.Config{Workload: w, Clients: c, Duration: b.duration, Warmup: b.warmup,
				Keys: b.keys, ValueBytes: b.value, KeyPrefix: b.prefix, Seed: b.seed}
			fmt.Fprintf(errOut, "%s with %d clients (%s): %s warm-up, %s measured ...\n", w, c, b.mode, b.warmup, b.duration)
			res, err := benchload.Run(cmd.Context(), cfg, drivers)
			closeAll()
			if err != nil {
				return fmt.Errorf("bench %s with %d clients: %w", w, c, err)
			}
			results = append(results, res)
		}
	}
	if o.output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tclients\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\terrors\tcheck\t")
	for _, r := range results {
		check := ""
		if r.Counter != nil {
			check = "ok"
			if !r.Counter.OK {
				check = fmt.Sprintf("BAD: counter rose by %d, %d increments succeeded", r.Counter.Gain(), r.Counter.Successes)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%s\t\n", r.Workload, r.Clients, r.OpsPerSec, r.P50, r.P90, r.P99, r.P999, r.Errors, check)
	}
	return tw.Flush()
}

// dial returns conns drivers of the mode: Go clients, or HTTP clients
// with the TLS that --cacert, --cert and --key ask for (plain HTTP if none).
func (b *benchOptions) dial(o *clientOptions, endpoints []string, conns int) ([]benchload.Driver, func(), error) {
	if b.mode == "grpc" {
		return benchload.DialCaspaxos(client.Config{Endpoints: endpoints,
			CAFile: o.cacert, CertFile: o.cert, KeyFile: o.key, NoRequestIDs: b.noRequestIDs}, conns)
	}
	tlsWanted := o.cacert != "" || o.cert != "" || o.key != ""
	if b.mode == "h2c" {
		if tlsWanted {
			return nil, nil, errors.New("--mode h2c is plain HTTP/2; over TLS the client port speaks HTTP/2 only to gRPC: use --mode http")
		}
		return benchload.DialH2C(endpoints, conns)
	}
	var tlsCfg *tls.Config
	if tlsWanted {
		var err error
		if tlsCfg, err = certs.ClientFiles(o.cacert, o.cert, o.key); err != nil {
			return nil, nil, err
		}
	}
	return benchload.DialHTTP(endpoints, conns, tlsCfg)
}
