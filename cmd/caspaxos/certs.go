package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/internal/certs"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make throwaway TLS certificates for a test or development cluster",
		Long: `certs create makes what dev --tls makes, for a cluster run some other way
(deploy/compose-tls.yaml runs it in a container): a CA for the client port and
one for the peer port, two certificates for each node (one per port), named
after it, and one for a client. They are for tests and development: the CAs'
keys are not kept, and production clusters take certificates from their own
CAs (docs/security.md).`,
		Example: `  caspaxos certs create --dir tls --nodes n1,n2,n3
  caspaxos --endpoints 127.0.0.1:7070 --cacert tls/ca.pem --cert tls/client.pem --key tls/client-key.pem get greeting`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCertsCreateCmd())
	return cmd
}

func newCertsCreateCmd() *cobra.Command {
	var (
		dir, nodes string
		ifMissing  bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Write throwaway CAs and certificates for the nodes and a client",
		Long: `Write under --dir (created 0700; keys 0600):
  ca.pem             the client CA: clients and the nodes' client ports trust it
  <name>.pem         each node's client-port certificate and key (<name>-key.pem),
                     naming the node, localhost, 127.0.0.1 and ::1
  client.pem         a client's certificate and key (client-key.pem): client
                     auth only, common name "client"
  peer-ca.pem        the peer CA: only the nodes' peer ports trust it
  <name>-peer.pem    each node's peer-port certificate and key
                     (<name>-peer-key.pem), naming the node
The peer CA signs the nodes' peer certificates and nothing else: a node takes
every certificate of its peer CA as a possible member's. They are valid for a
year. An existing ca.pem or peer-ca.pem is an error; with --if-missing, an
existing peer-ca.pem (written last) is a reason to do nothing, so that a
container that runs this on every start keeps the certificates it made first.`,
		Example: `  caspaxos certs create --dir tls --nodes n1,n2,n3
  caspaxos serve --name n1 --cert-file tls/n1.pem --key-file tls/n1-key.pem --trusted-ca-file tls/ca.pem --client-cert-auth \
    --peer-cert-file tls/n1-peer.pem --peer-key-file tls/n1-peer-key.pem --peer-trusted-ca-file tls/peer-ca.pem ...`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef(cmd.CommandPath(), "--dir is required")
			}
			var names []string
			for _, n := range strings.Split(nodes, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			if len(names) == 0 {
				return usagef(cmd.CommandPath(), "--nodes names no node")
			}
			peerCA := filepath.Join(dir, certs.DevPeerCAFile)
			if _, err := os.Stat(peerCA); err == nil && ifMissing {
				fmt.Fprintf(cmd.OutOrStdout(), "%s exists: certificates kept\n", peerCA)
				return nil
			}
			// Without --if-missing, either CA file is in the way; with it,
			// a ca.pem alone is an unfinished run's, or an older release's
			// (one CA for both ports), and is made again.
			for _, name := range []string{certs.DevCAFile, certs.DevPeerCAFile} {
				switch _, err := os.Stat(filepath.Join(dir, name)); {
				case err == nil && !ifMissing:
					return fmt.Errorf("certs create: %s exists: delete it (and its certificates) to make new ones, or pass --if-missing",
						filepath.Join(dir, name))
				case err != nil && !errors.Is(err, fs.ErrNotExist):
					return fmt.Errorf("certs create: %w", err)
				}
			}
			files, err := certs.WriteDev(dir, names, time.Now())
			if err != nil {
				return fmt.Errorf("certs create: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client CA %s\npeer CA %s\n", files.CA, files.PeerCA)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "node %s: client port %s %s, peer port %s %s\n", n, files.Nodes[n].CertFile, files.Nodes[n].KeyFile,
					files.Peers[n].CertFile, files.Peers[n].KeyFile)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client: %s %s\n", files.Client.CertFile, files.Client.KeyFile)
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&dir, "dir", "", "folder to write the certificates to")
	flags.StringVar(&nodes, "nodes", "", "comma-separated node names (each node's --name)")
	flags.BoolVar(&ifMissing, "if-missing", false, "do nothing if --dir already holds peer-ca.pem")
	return cmd
}
