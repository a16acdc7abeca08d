package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/certs"
)

// certs create writes a CA per port: the client CA's certificates for each
// node's client port and a client, the peer CA's for each node's peer
// port, each naming its node; it refuses to overwrite them, and with
// --if-missing keeps them.
func TestCertsCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1, n2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	pools := map[string]*x509.CertPool{}
	for _, ca := range []string{"ca", "peer-ca"} {
		p, err := certs.LoadPool(filepath.Join(dir, ca+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		pools[ca] = p
	}
	for _, tc := range []struct {
		file, name, ca string
		usage          x509.ExtKeyUsage
	}{
		{"n1", "n1", "ca", x509.ExtKeyUsageServerAuth},
		{"n2", "n2", "ca", x509.ExtKeyUsageServerAuth},
		{"n1-peer", "n1", "peer-ca", x509.ExtKeyUsageClientAuth},
		{"n2-peer", "n2", "peer-ca", x509.ExtKeyUsageServerAuth},
		{"client", "client", "ca", x509.ExtKeyUsageClientAuth},
	} {
		src, err := certs.Load(certs.Files{CertFile: filepath.Join(dir, tc.file+".pem"), KeyFile: filepath.Join(dir, tc.file+"-key.pem")}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		leaf := src.Leaf()
		if !certs.HasName(leaf, tc.name) {
			t.Errorf("%s's certificate names %v", tc.file, certs.Names(leaf))
		}
		for ca, pool := range pools {
			_, err := certs.VerifyChain([]*x509.Certificate{leaf}, pool, tc.usage, time.Now())
			if (err == nil) != (ca == tc.ca) {
				t.Errorf("%s's certificate against %s.pem: %v", tc.file, ca, err)
			}
		}
		if !strings.Contains(r.stdout, filepath.Join(dir, tc.file+".pem")) {
			t.Errorf("stdout does not list %s.pem: %q", tc.file, r.stdout)
		}
	}
	info, err := os.Stat(filepath.Join(dir, "n1-peer-key.pem"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("n1-peer-key.pem: %v %v, want mode 0600", info.Mode(), err)
	}

	ca, err := os.ReadFile(filepath.Join(dir, "peer-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1"); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("a second create: exit %d, stderr %q; want 1 and the CA exists", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1", "--if-missing"); r.code != 0 || !strings.Contains(r.stdout, "kept") {
		t.Fatalf("a second create --if-missing: exit %d, stdout %q, stderr %q; want 0", r.code, r.stdout, r.stderr)
	}
	if again, err := os.ReadFile(filepath.Join(dir, "peer-ca.pem")); err != nil || string(again) != string(ca) {
		t.Fatalf("peer-ca.pem changed by a create that should have kept it (%v)", err)
	}
	// A folder of an older release (one ca.pem for both ports) is made
	// again with --if-missing: its nodes would look for peer-ca.pem.
	old := filepath.Join(t.TempDir(), "tls")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "", "certs", "create", "--dir", old, "--nodes", "n1", "--if-missing"); r.code != 0 {
		t.Fatalf("create --if-missing over an older folder: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(old, "n1-peer.pem")); err != nil {
		t.Errorf("the older folder was not made again: %v", err)
	}
}
