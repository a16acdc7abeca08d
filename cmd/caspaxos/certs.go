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
(deploy/compose-tls.yaml runs it in a container): a CA, a certificate for each
node, named after it, and one for a client. They are for tests and
development: the CA's key is not kept, and production clusters take
certificates from their own CA (docs/security.md).`,
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
		Short: "Write a throwaway CA and certificates for the nodes and a client",
		Long: `Write under --dir (created 0700; keys 0600): ca.pem, the CA every end trusts;
<name>.pem and <name>-key.pem for each node of --nodes, for both its ports
(the certificate names the node, localhost, 127.0.0.1 and ::1); client.pem and
client-key.pem, a client's. They are valid for a year. An existing ca.pem is
an error, or with --if-missing a reason to do nothing, so that a container
that runs this on every start keeps the certificates it made first.`,
		Example: `  caspaxos certs create --dir tls --nodes n1,n2,n3
  caspaxos serve --name n1 --cert-file tls/n1.pem --key-file tls/n1-key.pem --trusted-ca-file tls/ca.pem --client-cert-auth \
    --peer-cert-file tls/n1.pem --peer-key-file tls/n1-key.pem --peer-trusted-ca-file tls/ca.pem ...`,
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
			ca := filepath.Join(dir, "ca.pem")
			switch _, err := os.Stat(ca); {
			case err == nil && ifMissing:
				fmt.Fprintf(cmd.OutOrStdout(), "%s exists: certificates kept\n", ca)
				return nil
			case err == nil:
				return fmt.Errorf("certs create: %s exists: delete it (and its certificates) to make new ones, or pass --if-missing", ca)
			case !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("certs create: %w", err)
			}
			files, err := certs.WriteDev(dir, names, time.Now())
			if err != nil {
				return fmt.Errorf("certs create: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA %s\n", files.CA)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "node %s: %s %s\n", n, files.Nodes[n].CertFile, files.Nodes[n].KeyFile)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client: %s %s\n", files.Client.CertFile, files.Client.KeyFile)
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&dir, "dir", "", "folder to write the certificates to")
	flags.StringVar(&nodes, "nodes", "", "comma-separated node names (each node's --name)")
	flags.BoolVar(&ifMissing, "if-missing", false, "do nothing if --dir already holds ca.pem")
	return cmd
}
