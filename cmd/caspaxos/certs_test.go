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

// certs create writes a CA, one certificate per node naming it and a
// client's, refuses to overwrite them, and with --if-missing keeps them.
func TestCertsCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1, n2")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	pool, err := certs.LoadPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1", "n2", "client"} {
		src, err := certs.Load(certs.Files{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem")}, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		leaf := src.Leaf()
		if !certs.HasName(leaf, name) {
			t.Errorf("%s's certificate names %v", name, certs.Names(leaf))
		}
		if _, err := certs.VerifyChain([]*x509.Certificate{leaf}, pool, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
			t.Errorf("%s's certificate is not signed by ca.pem: %v", name, err)
		}
		if !strings.Contains(r.stdout, filepath.Join(dir, name+".pem")) {
			t.Errorf("stdout does not list %s.pem: %q", name, r.stdout)
		}
	}
	info, err := os.Stat(filepath.Join(dir, "n1-key.pem"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("n1-key.pem: %v %v, want mode 0600", info.Mode(), err)
	}

	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1"); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("a second create: exit %d, stderr %q; want 1 and the CA exists", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "", "certs", "create", "--dir", dir, "--nodes", "n1", "--if-missing"); r.code != 0 || !strings.Contains(r.stdout, "kept") {
		t.Fatalf("a second create --if-missing: exit %d, stdout %q, stderr %q; want 0", r.code, r.stdout, r.stderr)
	}
	if again, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err != nil || string(again) != string(ca) {
		t.Fatalf("ca.pem changed by a create that should have kept it (%v)", err)
	}
}
