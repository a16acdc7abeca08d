package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/internal/certs"
)

const (
	maxDevNodes     = 9
	devStartTimeout = 30 * time.Second // until every node is healthy
	devStopTimeout  = 10 * time.Second // from SIGTERM until SIGKILL
	devPollInterval = 100 * time.Millisecond
)

// devOptions are the dev command's flags.
type devOptions struct {
	dataDir        string
	nodes          int
	baseClientPort int
	basePeerPort   int
	tls            bool
}

// devNode is one node of the dev cluster.
type devNode struct {
	name       string
	clientAddr string
	peerAddr   string
	dataDir    string
	tls        *certs.DevFiles // with --tls: the cluster's certificates
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster of 3 nodes on loopback for development",
		Long: `Run a cluster on 127.0.0.1 for development: each node is a child process of
this binary running "caspaxos serve". Node i (n1, n2, ...) serves clients on
base-client-port+i-1 (gRPC and HTTP/JSON on one port) and its peers on
base-peer-port+i-1, and keeps its data in DATA-DIR/<name>, which survives
restarts.

The children's output is printed with each line prefixed by the node's name.
Once every node answers GET /v1/health with 200, dev prints the endpoints, the
process ids and example commands. Ctrl-C (or SIGTERM) stops every node with
SIGTERM, and kills those still running after 10s. If a node exits on its own,
dev stops the others and exits with code 1.`,
		Example: `  go run ./cmd/caspaxos dev
  caspaxos dev --data-dir /tmp/caspaxos-data
  caspaxos dev --nodes 5 --base-client-port 8070 --base-peer-port 8080
  rm -rf ./caspaxos-data        # start over with empty nodes`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd.CommandPath()); err != nil {
				return err
			}
			nodes := o.layout()
			if o.tls {
				if err := devCerts(nodes, o.dataDir, cmd.OutOrStdout()); err != nil {
					return err
				}
			}
			return runDev(cmd.Context(), nodes, o.dataDir, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dataDir, "data-dir", "./caspaxos-data", "directory holding one data directory per node")
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes (1 to 9)")
	fs.IntVar(&o.baseClientPort, "base-client-port", 7070, "client port of n1; n2 gets the next, and so on")
	fs.IntVar(&o.basePeerPort, "base-peer-port", 7080, "peer port of n1; n2 gets the next, and so on")
	fs.BoolVar(&o.tls, "tls", false, "serve TLS on both ports with throwaway CAs (one per port) and certificates written to DATA-DIR/tls (client certificates required)")
	return cmd
}

func (o devOptions) validate(cmdPath string) error {
	switch {
	case o.nodes < 1 || o.nodes > maxDevNodes:
		return usagef(cmdPath, "--nodes %d: want 1 to %d", o.nodes, maxDevNodes)
	case o.dataDir == "":
		return usagef(cmdPath, "--data-dir is empty")
	case o.baseClientPort < 1 || o.baseClientPort+o.nodes-1 > 65535:
		return usagef(cmdPath, "--base-client-port %d: ports %d..%d are not all valid", o.baseClientPort, o.baseClientPort, o.baseClientPort+o.nodes-1)
	case o.basePeerPort < 1 || o.basePeerPort+o.nodes-1 > 65535:
		return usagef(cmdPath, "--base-peer-port %d: ports %d..%d are not all valid", o.basePeerPort, o.basePeerPort, o.basePeerPort+o.nodes-1)
	case o.baseClientPort < o.basePeerPort+o.nodes && o.basePeerPort < o.baseClientPort+o.nodes:
		return usagef(cmdPath, "client ports %d..%d and peer ports %d..%d overlap",
			o.baseClientPort, o.baseClientPort+o.nodes-1, o.basePeerPort, o.basePeerPort+o.nodes-1)
	}
	return nil
}

// layout names the nodes and assigns their addresses and directories.
func (o devOptions) layout() []devNode {
	nodes := make([]devNode, o.nodes)
	for i := range nodes {
		name := "n" + strconv.Itoa(i+1)
		nodes[i] = devNode{
			name:       name,
			clientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.baseClientPort+i)),
			peerAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(o.basePeerPort+i)),
			dataDir:    filepath.Join(o.dataDir, name),
		}
	}
	return nodes
}

// serveArgs is the command line of node n's child process.
func serveArgs(n devNode, cluster []devNode) []string {
	members := make([]string, len(cluster))
	for i, m := range cluster {
		members[i] = m.name + "=" + m.peerAddr
	}
	args := []string{
		"serve",
		"--name", n.name,
		"--data-dir", n.dataDir,
		"--client-addr", n.clientAddr,
		"--peer-addr", n.peerAddr,
		"--cluster", strings.Join(members, ","),
	}
	if f := n.tls; f != nil {
		nf, pf := f.Nodes[n.name], f.Peers[n.name]
		args = append(args, "--cert-file", nf.CertFile, "--key-file", nf.KeyFile, "--trusted-ca-file", f.CA, "--client-cert-auth",
			"--peer-cert-file", pf.CertFile, "--peer-key-file", pf.KeyFile, "--peer-trusted-ca-file", f.PeerCA)
	}
	return args
}

// devCerts makes throwaway CAs (one per port) and the nodes' and a
// client's certificates under dataDir/tls, and gives them to the nodes.
func devCerts(nodes []devNode, dataDir string, out io.Writer) error {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	files, err := certs.WriteDev(filepath.Join(dataDir, "tls"), names, time.Now())
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	for i := range nodes {
		nodes[i].tls = &files
	}
	fmt.Fprintf(out, "caspaxos dev: throwaway CAs and certificates are in %s\n", filepath.Dir(files.CA))
	return nil
}

// runDev starts the cluster, waits for it to be healthy, and runs it until
// ctx is done (a signal) or a node exits.
func runDev(ctx context.Context, nodes []devNode, dataDir string, stdout, stderr io.Writer) error {
	if err := checkPortsFree(nodes); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dev: finding this binary to run its serve command: %w", err)
	}
	var mu sync.Mutex // one line at a time, from dev and every child
	out, log := &syncWriter{mu: &mu, w: stdout}, &syncWriter{mu: &mu, w: stderr}
	cl, err := startCluster(exe, nodes, out, log)
	if err != nil {
		return err
	}
	if err := cl.waitHealthy(ctx, devStartTimeout); err != nil {
		stopErr := cl.stop(devStopTimeout)
		if ctx.Err() != nil { // interrupted while starting
			return stopErr
		}
		return err
	}
	writeBanner(out, nodes, cl.pids(), dataDir)
	select {
	case <-ctx.Done():
		fmt.Fprintln(log, "dev: stopping the cluster")
		if err := cl.stop(devStopTimeout); err != nil {
			return err
		}
		fmt.Fprintln(log, "dev: all nodes stopped")
		return nil
	case ch := <-cl.exits:
		fmt.Fprintf(log, "dev: %s exited unexpectedly; stopping the other nodes\n", ch.node.name)
		_ = cl.stop(devStopTimeout)
		return fmt.Errorf("dev: %s exited unexpectedly (%v); stopped the other nodes", ch.node.name, ch.err)
	}
}

// checkPortsFree fails clearly, before anything starts, if a port is taken.
func checkPortsFree(nodes []devNode) error {
	for _, n := range nodes {
		for _, addr := range []string{n.clientAddr, n.peerAddr} {
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("dev: %s for %s is not free (%v); is another cluster running? Choose other ports with --base-client-port and --base-peer-port", addr, n.name, err)
			}
			lis.Close()
		}
	}
	return nil
}

// writeBanner tells the user where the cluster is and how to use it.
func writeBanner(w io.Writer, nodes []devNode, pids []int, dataDir string) {
	var b bytes.Buffer
	endpoints := make([]string, len(nodes))
	fmt.Fprintf(&b, "\ncaspaxos dev: %d nodes are up and healthy\n\n", len(nodes))
	fmt.Fprintf(&b, "  %-4s  %-7s  %-21s  %-21s  %s\n", "NODE", "PID", "CLIENT (gRPC, HTTP)", "PEER", "DATA")
	for i, n := range nodes {
		endpoints[i] = n.clientAddr
		fmt.Fprintf(&b, "  %-4s  %-7d  %-21s  %-21s  %s\n", n.name, pids[i], n.clientAddr, n.peerAddr, n.dataDir)
	}
	first, last := nodes[0].clientAddr, nodes[len(nodes)-1].clientAddr
	if f := nodes[0].tls; f != nil {
		writeTLSBanner(&b, f, endpoints, first, last, dataDir)
		_, _ = w.Write(b.Bytes())
		return
	}
	fmt.Fprintf(&b, `
Try, in another terminal (caspaxos is "go run ./cmd/caspaxos" from the repository):
  export %s=%s
  caspaxos put greeting hello
  caspaxos get greeting
  caspaxos incr visits
  caspaxos members
  curl -X PUT --data-binary hello http://%s/v1/kv/greeting
  curl -i http://%s/v1/kv/greeting
  curl -X POST 'http://%s/v1/kv/visits?incr=1'
  curl http://%s/v1/health

Ctrl-C stops the cluster; the data stays in %s.
`, envEndpoints, strings.Join(endpoints, ","), first, last, first, last, dataDir)
	_, _ = w.Write(b.Bytes())
}

// writeTLSBanner is the banner's usage part for a cluster run with --tls.
func writeTLSBanner(b *bytes.Buffer, f *certs.DevFiles, endpoints []string, first, last, dataDir string) {
	// The CLI and curl take the same three flags.
	flags := fmt.Sprintf("--cacert %s --cert %s --key %s", f.CA, f.Client.CertFile, f.Client.KeyFile)
	fmt.Fprintf(b, `
TLS on both ports; clients need the CA and the client certificate.
Try, in another terminal (caspaxos is "go run ./cmd/caspaxos" from the repository):
  export %s=%s
  caspaxos %s put greeting hello
  caspaxos %s get greeting
  caspaxos %s members
  curl %s -X PUT --data-binary hello https://%s/v1/kv/greeting
  curl %s -i https://%s/v1/kv/greeting
  curl %s https://%s/v1/health

Ctrl-C stops the cluster; the data stays in %s.
`, envEndpoints, strings.Join(endpoints, ","), flags, flags, flags, flags, first, flags, last, flags, first, dataDir)
}
