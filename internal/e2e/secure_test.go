package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/certs"
)

// setup is how a test's cluster runs. The tests that take one run under
// each of setups, with the same body.
type setup struct {
	name string
	// secure: TLS on both ports with client certificates required, and
	// authorization on.
	secure bool
	// optionalClientCerts: no --client-cert-auth (a browser presents no
	// certificate; auth is by token alone).
	optionalClientCerts bool
}

var setups = []setup{{name: "plain"}, {name: "tls+auth", secure: true}}

// The accounts of a secure cluster: root (admin, for membership changes)
// and a user whose one role grants readwrite on the test's prefix.
const (
	rootPassword = "root-secret"
	appUser      = "app"
	appPassword  = "app-secret"
)

// security is what a secure cluster's nodes and clients share: a CA made
// for the test (its key kept, so that nodes joining later get certificates
// too), the nodes' certificates and the client's.
type security struct {
	dir    string // where the PEM files are
	ca     *certs.CA
	caFile string
	client certs.Files // the client certificate, for the Go client, the CLI and HTTP
	nodes  map[string]certs.Files
	// optionalClientCerts: the nodes do not require client certificates.
	optionalClientCerts bool
	tls                 *tls.Config  // the clients' TLS: the CA, the client certificate
	http                *http.Client // HTTP with tls
}

func newSecurity(t *testing.T) *security {
	t.Helper()
	now := time.Now()
	ca, err := certs.NewCA("caspaxos e2e CA", now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s := &security{dir: t.TempDir(), ca: ca, nodes: map[string]certs.Files{}}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	if err := os.WriteFile(s.caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s.client = s.issue(t, "client")
	if s.tls, err = certs.ClientFiles(s.caFile, s.client.CertFile, s.client.KeyFile); err != nil {
		t.Fatal(err)
	}
	s.http = &http.Client{Transport: &http.Transport{TLSClientConfig: s.tls}, Timeout: 5 * time.Second}
	return s
}

// issue writes a certificate and key named after name (as a member's
// certificate must be), once: a node restarted keeps its certificate.
func (s *security) issue(t *testing.T, name string) certs.Files {
	t.Helper()
	if f, ok := s.nodes[name]; ok {
		return f
	}
	now := time.Now()
	c, k, err := s.ca.Issue(name, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := certs.Files{CertFile: filepath.Join(s.dir, name+".pem"), KeyFile: filepath.Join(s.dir, name+"-key.pem"), CAFile: s.caFile}
	if err := os.WriteFile(f.CertFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	s.nodes[name] = f
	return f
}

// serveFlags are node name's TLS flags: its certificate on both ports, the
// client certificates required.
func (s *security) serveFlags(t *testing.T, name string) []string {
	f := s.issue(t, name)
	flags := []string{"--cert-file", f.CertFile, "--key-file", f.KeyFile, "--trusted-ca-file", s.caFile, "--client-cert-auth",
		"--peer-cert-file", f.CertFile, "--peer-key-file", f.KeyFile, "--peer-trusted-ca-file", s.caFile}
	if s.optionalClientCerts {
		flags = slices.DeleteFunc(flags, func(f string) bool { return f == "--client-cert-auth" })
	}
	return flags
}

// newClusterWith starts n nodes as s says. A secure cluster is healthy and
// has auth on when this returns, and its clients log in as a user who may
// read and write the keys beginning with prefix.
func newClusterWith(t *testing.T, n int, s setup, prefix string, extra ...string) *cluster {
	t.Helper()
	c := newProcs(t, n)
	c.extra = extra
	if s.secure {
		c.sec = newSecurity(t)
		c.sec.optionalClientCerts = s.optionalClientCerts
	}
	for i := range c.procs {
		c.start(i)
	}
	if c.sec != nil {
		for i := range c.procs {
			c.waitHealth(i, 200)
			// The node says at start what its ports speak.
			if logs := c.procs[i].logs.String(); !strings.Contains(logs, "client_tls=true peer_tls=true") {
				t.Fatalf("%s does not say it serves TLS on both ports:\n%s", c.procs[i].name, logs)
			}
		}
		c.enableAuth(prefix)
	}
	return c
}

// enableAuth turns auth on through node 0 with the CLI, as an operator
// would (docs/security.md): root, auth enable, then the user app with a
// role granting readwrite on prefix. It then checks that node 0 refuses a
// client without credentials, and waits until every node lets app read
// (the others may check against a state up to --auth-staleness old).
func (c *cluster) enableAuth(prefix string) {
	c.t.Helper()
	c.cli(0, false, "user", "add", "root:"+rootPassword)
	c.cli(0, false, "auth", "enable")
	c.cli(0, true, "user", "add", appUser+":"+appPassword)
	c.cli(0, true, "role", "add", "rw")
	c.cli(0, true, "role", "grant", "rw", "readwrite", prefix, "--prefix")
	c.cli(0, true, "user", "grant-role", appUser, "rw")

	anon, err := client.New(client.Config{Endpoints: []string{c.procs[0].client}, DialTimeout: time.Second, TLS: c.sec.tls})
	if err != nil {
		c.t.Fatal(err)
	}
	defer anon.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := anon.Get(ctx, prefix+"x"); !errors.Is(err, client.ErrUnauthenticated) {
		c.t.Fatalf("a get without credentials with auth on: %v, want unauthenticated", err)
	}

	for i := range c.procs {
		cl := c.client(i)
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := cl.Get(ctx, prefix+"auth-check")
			cancel()
			if errors.Is(err, client.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s does not let %s read %s*: %v", c.procs[i].name, appUser, prefix, err)
			}
			waitUntil(time.Now().Add(50 * time.Millisecond))
		}
	}
}

// cliFlags are the CLI's flags for this cluster: none for a plain one; the
// CA, the client certificate and, if admin, root's credentials for a
// secure one.
func (c *cluster) cliFlags(admin bool) []string {
	if c.sec == nil {
		return nil
	}
	f := []string{"--cacert", c.sec.caFile, "--cert", c.sec.client.CertFile, "--key", c.sec.client.KeyFile}
	if admin {
		f = append(f, "--user", "root:"+rootPassword)
	}
	return f
}

// cli runs a caspaxos client command through node via and fails the test
// if it fails.
func (c *cluster) cli(via int, admin bool, args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string{"--endpoints", c.procs[via].client}, c.cliFlags(admin)...), args...)
	if out, err := exec.CommandContext(ctx, binaryPath, full...).CombinedOutput(); err != nil {
		c.t.Fatalf("caspaxos %v: %v: %s", args, err, out)
	}
}

// get is an HTTP GET of path on node i's client port.
func (c *cluster) get(i int, path string) (*http.Response, error) {
	if c.sec == nil {
		return http.Get("http://" + c.procs[i].client + path)
	}
	return c.sec.http.Get("https://" + c.procs[i].client + path)
}
