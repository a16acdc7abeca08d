package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/server/servertest"
	"github.com/caspaxos/caspaxos/transport"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// withTLS gives a node's Config the dev certificates of its name on both
// ports (the client CA's on the client port, the peer CA's on the peer
// port), client certificates required.
func withTLS(files certs.DevFiles) func(*Config) {
	return func(c *Config) {
		f, p := files.Nodes[c.Name], files.Peers[c.Name]
		c.TLS = TLSConfig{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: files.CA, ClientCertAuth: true,
			PeerCertFile: p.CertFile, PeerKeyFile: p.KeyFile, PeerTrustedCAFile: files.PeerCA}
	}
}

// A three-node cluster with TLS on both ports serves puts and gets over
// gRPC and HTTPS, adds a fourth node with a certificate of its own, and
// refuses clients without a certificate and non-members on its peer port.
func TestTLSCluster(t *testing.T) {
	files, err := certs.WriteDev(filepath.Join(t.TempDir(), "tls"), []string{"n1", "n2", "n3", "n4"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t, 3, withTLS(files))
	cl, err := client.New(client.Config{Endpoints: []string{c.cfgs[0].ClientAddr, c.cfgs[1].ClientAddr},
		CAFile: files.CA, CertFile: files.Client.CertFile, KeyFile: files.Client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(key, value string) {
		t.Helper()
		for {
			_, err := cl.Put(ctx, key, []byte(value))
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("put %s over TLS: %v", key, err)
			}
			time.Sleep(50 * time.Millisecond) // the links come up
		}
	}
	put("k1", "v1")

	// HTTPS with the client certificate; the answer names no warning (the
	// peer port is TLS, and on loopback anyway).
	tlsCfg, err := certs.ClientFiles(files.CA, files.Client.CertFile, files.Client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + c.cfgs[2].ClientAddr + "/v1/kv/k1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "v1") && !strings.Contains(string(body), "djE=") {
		t.Fatalf("HTTPS get: %d %s", resp.StatusCode, body)
	}

	// No client certificate: the handshake is refused, on gRPC and HTTP.
	noCert, err := certs.ClientFiles(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	bare, err := client.New(client.Config{Endpoints: []string{c.cfgs[0].ClientAddr}, TLS: noCert, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	if _, err := bare.Get(short, "k1"); err == nil {
		t.Error("a gRPC client without a certificate was answered")
	}
	cancelShort()
	hcBare := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}, Timeout: 5 * time.Second}
	if resp, err := hcBare.Get("https://" + c.cfgs[0].ClientAddr + "/v1/health"); err == nil {
		resp.Body.Close()
		t.Error("an HTTPS client without a certificate was answered")
	}
	// Plain HTTP to the TLS client port.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.cfgs[0].ClientAddr + "/v1/health"); err == nil {
		resp.Body.Close()
		t.Error("plain HTTP to a TLS client port was answered")
	}

	// The Admin service refuses the client's certificate: of the client
	// CA, not the peer CA (and naming no member). Info is asked: a call
	// let through is answered, where SetState's empty state would be
	// refused either way.
	infoAsClient := func(peerAddr string) error {
		t.Helper()
		clientSrc, err := certs.Load(certs.Files{CertFile: files.Client.CertFile, KeyFile: files.Client.KeyFile, CAFile: files.PeerCA}, nil)
		if err != nil {
			t.Fatal(err)
		}
		adminTLS, err := clientSrc.ClientConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(peerAddr, grpc.WithTransportCredentials(credentials.NewTLS(adminTLS)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
		defer cancelShort()
		_, err = peerpb.NewAdminClient(conn).Info(short, &peerpb.InfoRequest{})
		return err
	}
	if infoAsClient(c.cfgs[0].PeerAddr) == nil {
		t.Fatal("Admin.Info from a non-member's certificate was answered")
	}
	if st := c.daemons[0].members.State(); st.Changing || st.Membership.Version() != 1 {
		t.Fatalf("the refused call changed the node's state: %+v", st)
	}

	// A fourth node, with its own certificate, joins over TLS.
	addrs := freeAddrs(t, 2)
	n4 := Config{Name: "n4", DataDir: t.TempDir(), ClientAddr: addrs[0], PeerAddr: addrs[1], Join: true,
		RequestTimeout: 2 * time.Second, Transport: transport.Config{DeadAfter: 2 * time.Second}}
	withTLS(files)(&n4)
	c.cfgs = append(c.cfgs, n4)
	c.daemons = append(c.daemons, nil)
	c.start(t, 3)
	// n4 knows no member name yet, and takes any certificate of its peer
	// CA; the client's is not one (dev certificates: a CA per port).
	if infoAsClient(n4.PeerAddr) == nil {
		t.Fatal("the Admin service of a joining node answered the client's certificate")
	}
	if err := c.daemons[0].AddMember(ctx, "n4", n4.PeerAddr); err != nil {
		t.Fatalf("adding n4 over TLS: %v", err)
	}
	cl4, err := client.New(client.Config{Endpoints: []string{n4.ClientAddr}, NoRouting: true,
		CAFile: files.CA, CertFile: files.Client.CertFile, KeyFile: files.Client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer cl4.Close()
	for i := range 10 {
		put(fmt.Sprint("key-", i), fmt.Sprint("v", i))
	}
	// n4's links to the others come up once they took the membership.
	for {
		resp, err := hc.Get("https://" + n4.ClientAddr + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("n4 not healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 10 {
		got, err := cl4.Get(ctx, fmt.Sprint("key-", i))
		if err != nil || string(got.Data) != fmt.Sprint("v", i) {
			t.Fatalf("key-%d through n4: %q %v", i, got.Data, err)
		}
	}
	var m struct {
		Members []struct{ Name string } `json:"members"`
	}
	resp, err = hc.Get("https://" + n4.ClientAddr + "/v1/members")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if len(m.Members) != 4 {
		t.Fatalf("n4 sees members %+v", m.Members)
	}
}

// A node whose peer port is plain TCP on a non-loopback address says so
// in its health answer, which stays 200.
func TestUnauthenticatedPeersWarning(t *testing.T) {
	d := &Daemon{cfg: Config{PeerAddr: "0.0.0.0:7080"}}
	if w := d.warnings(); len(w) != 1 || !strings.Contains(w[0], "peers are unauthenticated") {
		t.Fatalf("warnings on 0.0.0.0: %q", w)
	}
	for _, addr := range []string{"127.0.0.1:7080", "[::1]:7080", "localhost:7080"} {
		if w := (&Daemon{cfg: Config{PeerAddr: addr}}).warnings(); len(w) != 0 {
			t.Errorf("warnings on %s: %q", addr, w)
		}
	}
	var peer certs.Source
	if w := (&Daemon{cfg: Config{PeerAddr: "10.0.0.1:7080"}, tls: tlsSources{peer: &peer}}).warnings(); len(w) != 0 {
		t.Errorf("warnings with peer TLS: %q", w)
	}
}

// seenOnly is a node's way to the auth state that answers only from its
// disk: what the last quorum read found.
type seenOnly struct{ seen auth.Seen }

func (s seenOnly) Do(context.Context, kv.Op) (protocol.State, error) {
	return protocol.State{}, kv.ErrNoQuorum
}
func (s seenOnly) Local(string) (protocol.State, error) { return protocol.State{}, nil }
func (s seenOnly) Seen() (auth.Seen, bool, error)       { return s.seen, true, nil }
func (s seenOnly) SetSeen(auth.Seen) error              { return nil }

// A node with auth enabled and a plain client port on a non-loopback
// address warns that credentials travel in clear; not with auth disabled,
// client TLS, or a loopback client port.
func TestCredentialsInClearWarning(t *testing.T) {
	var client certs.Source
	for _, tc := range []struct {
		name    string
		addr    string
		enabled bool
		tls     tlsSources
		warn    bool
	}{
		{"auth enabled, plain, 0.0.0.0", "0.0.0.0:7070", true, tlsSources{}, true},
		{"auth disabled, plain, 0.0.0.0", "0.0.0.0:7070", false, tlsSources{}, false},
		{"auth enabled, plain, loopback", "127.0.0.1:7070", true, tlsSources{}, false},
		{"auth enabled, client TLS", "10.0.0.1:7070", true, tlsSources{client: &client}, false},
	} {
		g, err := auth.New(auth.Config{}, seenOnly{auth.Seen{Enabled: tc.enabled, Version: 3}})
		if err != nil {
			t.Fatal(err)
		}
		d := &Daemon{cfg: Config{ClientAddr: tc.addr, PeerAddr: "127.0.0.1:7080"}, authz: g, tls: tc.tls}
		w := d.warnings()
		if got := len(w) == 1 && strings.Contains(w[0], "credentials travel in clear"); got != tc.warn || (!tc.warn && len(w) != 0) {
			t.Errorf("%s: warnings %q, want the credentials warning %v", tc.name, w, tc.warn)
		}
	}
}

// testPKI is the TLS material of a test cluster laid out as certs.WriteDev
// lays it out (a client CA and a peer CA), with the CAs' keys kept so that
// a test can issue more: a non-member's certificate, an expired one, a
// replacement. other is a third CA that no node trusts.
type testPKI struct {
	dir                 string
	client, peer, other *certs.CA
	files               certs.DevFiles
}

// issuer is one of certs.CA's ways to issue: Issue or IssueClient.
type issuer func(name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error)

func newTestPKI(t *testing.T, nodes ...string) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{dir: t.TempDir()}
	for _, ca := range []struct {
		to   **certs.CA
		name string
	}{{&p.client, "test client CA"}, {&p.peer, "test peer CA"}, {&p.other, "another CA"}} {
		var err error
		if *ca.to, err = certs.NewCA(ca.name, now.Add(-time.Hour), now.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	p.files = certs.DevFiles{CA: p.write(t, "ca.pem", p.client.PEM), PeerCA: p.write(t, "peer-ca.pem", p.peer.PEM),
		Nodes: map[string]certs.Files{}, Peers: map[string]certs.Files{}}
	p.files.Client = p.issue(t, p.client.IssueClient, "client", "client", p.files.CA)
	for _, n := range nodes {
		p.files.Nodes[n] = p.issue(t, p.client.Issue, n, n, p.files.CA)
		p.files.Peers[n] = p.issue(t, p.peer.Issue, n, n+"-peer", p.files.PeerCA)
	}
	return p
}

// write writes b to the file name under p.dir, whole or not at all (a
// rename): a node reloading its certificate never reads half of it.
func (p *testPKI) write(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue issues name's certificate, valid from an hour ago for a day, and
// writes it as base.pem and base-key.pem (trusting caFile).
func (p *testPKI) issue(t *testing.T, by issuer, name, base, caFile string) certs.Files {
	t.Helper()
	now := time.Now()
	return p.issueAt(t, by, name, base, caFile, now.Add(-time.Hour), now.Add(24*time.Hour))
}

func (p *testPKI) issueAt(t *testing.T, by issuer, name, base, caFile string, notBefore, notAfter time.Time) certs.Files {
	t.Helper()
	c, k, err := by(name, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a handshake between the two renames loads the new key
	// with the old certificate, which fails and keeps the old pair; the
	// certificate's rename is a change of its own, and is reloaded.
	key := p.write(t, base+"-key.pem", k)
	return certs.Files{CertFile: p.write(t, base+".pem", c), KeyFile: key, CAFile: caFile}
}

// refusals keeps the lines a node logs about TLS handshakes it refused.
type refusals struct {
	mu    sync.Mutex
	lines []string
}

func (r *refusals) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("TLS handshake failed")) {
		r.mu.Lock()
		r.lines = append(r.lines, string(p))
		r.mu.Unlock()
	}
	return len(p), nil
}

// count returns how many of the lines say why.
func (r *refusals) count(why string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, why) {
			n++
		}
	}
	return n
}

// logRefusals gives node name a logger at debug level whose refused
// handshakes (client and peer port) go to r.
func logRefusals(name string, r *refusals) func(*Config) {
	return func(c *Config) {
		if c.Name == name {
			c.Logger = slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
}

// tlsClient is a Go client of the TLS cluster files, presenting the
// client certificate.
func tlsClient(t *testing.T, files certs.DevFiles, addrs ...string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Endpoints: addrs, CAFile: files.CA, CertFile: files.Client.CertFile, KeyFile: files.Client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// putUntil puts key until it succeeds (the peer links come up) or ctx ends.
func putUntil(t *testing.T, ctx context.Context, cl *client.Client, key, value string) {
	t.Helper()
	for {
		_, err := cl.Put(ctx, key, []byte(value))
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("put %s over TLS: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// presenting is the tls.Config of a client of the client port that trusts
// caFile and presents f's certificate whatever the server asks for. (Go's
// client sends no certificate when the server's list of acceptable CAs
// names none of its issuers: one of another CA would go unseen.)
func presenting(t *testing.T, caFile string, f certs.Files) *tls.Config {
	t.Helper()
	cfg, err := certs.ClientFiles(caFile, f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert := cfg.Certificates[0]
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

// TestTLSClientPortRefusals: a node whose client port requires client
// certificates refuses, at the handshake, a certificate of another CA and
// an expired one of its own CA, over gRPC (the call fails Unavailable) and
// HTTPS (a connection error). It logs why, and the write each attempted
// did not happen; a good client's writes still do.
func TestTLSClientPortRefusals(t *testing.T) {
	p := newTestPKI(t, "n1", "n2", "n3")
	logs := &refusals{}
	c := newTestCluster(t, 3, withTLS(p.files), logRefusals("n1", logs))
	addr := c.cfgs[0].ClientAddr
	good := tlsClient(t, p.files, addr)
	ctx := servertest.Ctx(t, 60*time.Second)
	putUntil(t, ctx, good, "k", "v")
	now := time.Now()
	for _, tc := range []struct {
		name string
		cert certs.Files
		why  string // in the node's log line
	}{
		{"another CA's certificate", p.issue(t, p.other.IssueClient, "client", "foreign-client", p.files.CA),
			"x509: certificate signed by unknown authority"},
		{"an expired certificate", p.issueAt(t, p.client.IssueClient, "client", "expired-client", p.files.CA, now.Add(-2*time.Hour), now.Add(-time.Minute)),
			"x509: certificate has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := presenting(t, p.files.CA, tc.cert)
			before := logs.count(tc.why)
			key := "refused/" + strings.ReplaceAll(tc.name, " ", "-")
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			short, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err = caspaxospb.NewKVClient(conn).Put(short, &caspaxospb.PutRequest{Key: []byte(key), Value: []byte("x")})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("gRPC put: %v, want Unavailable", err)
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
			defer hc.CloseIdleConnections()
			if resp, err := hc.Do(mustRequest(t, "PUT", "https://"+addr+"/v1/kv/"+key, "x")); err == nil {
				resp.Body.Close()
				t.Errorf("HTTPS put: answered %d, want a connection error", resp.StatusCode)
			}
			if v, err := good.Get(ctx, key); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("%s after the refused writes: %q, %v; want not found", key, v.Data, err)
			}
			servertest.WaitFor(t, "the node to log both refusals with "+tc.why, func() bool { return logs.count(tc.why) >= before+2 })
		})
	}
	if _, err := good.Put(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("a good client's put after the refusals: %v", err)
	}
	if v, err := good.Get(ctx, "k"); err != nil || string(v.Data) != "v" {
		t.Fatalf("k after the refusals: %q, %v", v.Data, err)
	}
}

// peerConn is a gRPC connection to a peer port presenting f's certificate
// and verifying the node's against the peer CA, as a member's would.
func peerConn(t *testing.T, addr string, f certs.Files) *grpc.ClientConn {
	t.Helper()
	src, err := certs.Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := src.ClientConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// peerCall is one call to a node's Admin or GC service.
type peerCall struct {
	name string
	call func(context.Context, *grpc.ClientConn) error
}

// destructiveCalls are the peer calls that once let anyone who reached a
// peer port destroy the cluster: a membership of n1 alone (a newer
// version, valid: a member's call would install it), every proposer fenced
// at the highest age (no write would pass again), and a listing of every
// key (whose reply must be empty when refused).
func destructiveCalls(t *testing.T, c *testCluster) []peerCall {
	t.Helper()
	cur := c.daemons[0].members.State().Membership
	n1, _ := cur.Node(c.daemons[0].id)
	alone := membership.Membership{Config: protocol.Majority(cur.Version()+1, n1.ID), Nodes: []membership.Member{n1}}
	if err := alone.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := json.Marshal(membership.NodeState{Membership: alone})
	if err != nil {
		t.Fatal(err)
	}
	ages := map[uint64]uint64{}
	for _, d := range c.daemons {
		if d != nil {
			ages[uint64(d.id)] = protocol.MaxAge
		}
	}
	return []peerCall{
		{"Admin.SetState", func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := peerpb.NewAdminClient(conn).SetState(ctx, &peerpb.SetStateRequest{StateJson: st})
			return err
		}},
		{"GC.Fence", func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := peerpb.NewGCClient(conn).Fence(ctx, &peerpb.FenceRequest{Ages: ages})
			return err
		}},
		{"Admin.ScanKeys", func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := peerpb.NewAdminClient(conn).ScanKeys(ctx, &peerpb.ScanKeysRequest{Limit: 100})
			if err == nil {
				return fmt.Errorf("listed %d keys", len(r.GetKeys()))
			}
			return err
		}},
	}
}

// peerState is what the destructive calls would change on a node: its
// membership and its acceptor's age fences. (Not its proposer's counter
// ceiling, which no call here changes and the node's own proposals move.)
type peerState struct {
	Version  uint64
	Changing bool
	Ages     map[protocol.NodeID]uint64
}

func peerStates(t *testing.T, c *testCluster) map[string]peerState {
	t.Helper()
	out := map[string]peerState{}
	for i, d := range c.daemons {
		if d == nil {
			continue
		}
		st := d.members.State()
		f, err := membership.ReadFences(d.store)
		if err != nil {
			t.Fatal(err)
		}
		out[c.cfgs[i].Name] = peerState{st.Membership.Version(), st.Changing, f.Ages}
	}
	return out
}

// TestTLSPeerServicesRefuseNonMembers: on peer ports with mutual TLS,
// Admin.SetState, GC.Fence and Admin.ScanKeys (destructiveCalls) are
// refused to a certificate of the peer CA that names no member and to
// another CA's certificate that names a member: at the handshake, so the
// call fails Unavailable and the node logs why. Afterwards no node's
// membership or fences changed, nothing was listed, and writes and reads
// work; a member's certificate is answered by the same client code.
func TestTLSPeerServicesRefuseNonMembers(t *testing.T) {
	p := newTestPKI(t, "n1", "n2", "n3")
	logs := map[string]*refusals{"n1": {}, "n2": {}, "n3": {}}
	mods := []func(*Config){withTLS(p.files)}
	for name, r := range logs {
		mods = append(mods, logRefusals(name, r))
	}
	c := newTestCluster(t, 3, mods...)
	good := tlsClient(t, p.files, c.cfgs[0].ClientAddr)
	ctx := servertest.Ctx(t, 60*time.Second)
	putUntil(t, ctx, good, "k", "v")
	before := peerStates(t, c)
	calls := destructiveCalls(t, c)
	for _, caller := range []struct {
		name string
		cert certs.Files
		why  string // in the node's log line
	}{
		{"a non-member's certificate of the peer CA", p.issue(t, p.peer.Issue, "n9", "n9-peer", p.files.PeerCA),
			"the peer's certificate names no member"},
		{"another CA's certificate naming n2", p.issue(t, p.other.Issue, "n2", "n2-foreign", p.files.PeerCA),
			"x509: certificate signed by unknown authority"},
	} {
		for _, cfg := range c.cfgs {
			for _, call := range calls {
				logged := logs[cfg.Name].count(caller.why)
				// A connection of its own: gRPC fails the calls after a
				// failed handshake without another one for a while.
				conn := peerConn(t, cfg.PeerAddr, caller.cert)
				short, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := call.call(short, conn)
				cancel()
				conn.Close()
				if status.Code(err) != codes.Unavailable {
					t.Errorf("%s with %s: %v, want Unavailable", call.name, caller.name, err)
				}
				if after := peerStates(t, c); !reflect.DeepEqual(after, before) {
					t.Fatalf("%s to %s with %s changed the nodes: %+v, was %+v", call.name, cfg.Name, caller.name, after, before)
				}
				servertest.WaitFor(t, cfg.Name+" to log the refusal of "+caller.name, func() bool { return logs[cfg.Name].count(caller.why) > logged })
			}
		}
	}
	// The same client code, with a member's certificate, is answered.
	r, err := peerpb.NewAdminClient(peerConn(t, c.cfgs[0].PeerAddr, p.files.Peers["n2"])).ScanKeys(ctx, &peerpb.ScanKeysRequest{Limit: 100})
	if err != nil || len(r.GetKeys()) == 0 {
		t.Fatalf("Admin.ScanKeys with n2's certificate: %v, %v", r, err)
	}
	if _, err := good.Put(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("put after the refusals: %v", err)
	}
	if v, err := good.Get(ctx, "after"); err != nil || string(v.Data) != "v" {
		t.Fatalf("get after the refusals: %q, %v", v.Data, err)
	}
}

// TestTLSPeerServicesRefuseARemovedMember: a connection to a peer port made
// with a member's certificate (n3's) loses its calls once n3 is removed:
// the services' interceptor answers the destructive calls PermissionDenied
// on it, and nothing changes.
func TestTLSPeerServicesRefuseARemovedMember(t *testing.T) {
	p := newTestPKI(t, "n1", "n2", "n3")
	c := newTestCluster(t, 3, withTLS(p.files))
	good := tlsClient(t, p.files, c.cfgs[0].ClientAddr)
	ctx := servertest.Ctx(t, 60*time.Second)
	putUntil(t, ctx, good, "k", "v")
	conn := peerConn(t, c.cfgs[0].PeerAddr, p.files.Peers["n3"])
	admin := peerpb.NewAdminClient(conn)
	if r, err := admin.ScanKeys(ctx, &peerpb.ScanKeysRequest{Limit: 100}); err != nil || len(r.GetKeys()) == 0 {
		t.Fatalf("Admin.ScanKeys with n3's certificate, a member's: %v, %v", r, err)
	}
	c.remove(t, 0, "n3")
	select {
	case <-c.daemons[2].Removed():
	case <-ctx.Done():
		t.Fatal("n3 did not learn of its removal")
	}
	c.stop(2)
	before := peerStates(t, c)
	for _, call := range destructiveCalls(t, c) {
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := call.call(short, conn)
		cancel()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "names no member") {
			t.Errorf("%s with the removed n3's certificate: %v, want PermissionDenied (names no member)", call.name, err)
		}
		if after := peerStates(t, c); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s with the removed n3's certificate changed the nodes: %+v, was %+v", call.name, after, before)
		}
	}
	if _, err := good.Put(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("put after the refusals: %v", err)
	}
	if v, err := good.Get(ctx, "after"); err != nil || string(v.Data) != "v" {
		t.Fatalf("get after the refusals: %q, %v", v.Data, err)
	}
}

// served returns the certificate a TLS port at addr presents to a new
// connection presenting f's certificate, verified against f's CA file.
func served(t *testing.T, addr string, f certs.Files) *x509.Certificate {
	t.Helper()
	cfg, err := certs.ClientFiles(f.CAFile, f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestTLSCertificateReload: a running node whose certificate files are
// rewritten with a newly issued certificate (another serial) presents it
// from a later handshake on, on its client port and on its peer port,
// without a restart; the cluster goes on serving, to the clients it had
// and to new ones.
func TestTLSCertificateReload(t *testing.T) {
	p := newTestPKI(t, "n1", "n2", "n3")
	c := newTestCluster(t, 3, withTLS(p.files))
	n1 := c.cfgs[0]
	good := tlsClient(t, p.files, n1.ClientAddr)
	ctx := servertest.Ctx(t, 60*time.Second)
	putUntil(t, ctx, good, "k", "v")
	for _, port := range []struct {
		name   string
		addr   string
		by     issuer
		base   string      // n1's certificate files, base.pem and base-key.pem
		caller certs.Files // presented, and its CA trusted
		caFile string
	}{
		{"client port", n1.ClientAddr, p.client.Issue, "n1", p.files.Client, p.files.CA},
		{"peer port", n1.PeerAddr, p.peer.Issue, "n1-peer", p.files.Peers["n2"], p.files.PeerCA},
	} {
		t.Run(port.name, func(t *testing.T) {
			old := served(t, port.addr, port.caller)
			next := p.issue(t, port.by, "n1", port.base, port.caFile)
			src, err := certs.Load(next, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := src.Leaf().SerialNumber
			if want.Cmp(old.SerialNumber) == 0 || !certs.HasName(old, "n1") {
				t.Fatalf("n1 served serial %v (names %q) before; the new one is %v", old.SerialNumber, certs.Names(old), want)
			}
			servertest.WaitFor(t, "n1's "+port.name+" to present the new certificate", func() bool {
				return served(t, port.addr, port.caller).SerialNumber.Cmp(want) == 0
			})
		})
	}
	// The client connected before the rewrite is served, and so is a new
	// one, whose handshake takes the new certificate.
	if _, err := good.Put(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("put through the old connection after the reload: %v", err)
	}
	fresh := tlsClient(t, p.files, n1.ClientAddr)
	if _, err := fresh.Put(ctx, "fresh", []byte("v")); err != nil {
		t.Fatalf("put through a new connection after the reload: %v", err)
	}
	// New peer links take n1's new certificate, both ways: with n3
	// stopped and n2 restarted, a write through n1 needs the links that
	// n1 and n2 make afresh.
	c.stop(2)
	c.stop(1)
	c.start(t, 1)
	putUntil(t, ctx, fresh, "fresh", "v")
	for _, k := range []string{"k", "after", "fresh"} {
		if v, err := fresh.Get(ctx, k); err != nil || string(v.Data) != "v" {
			t.Fatalf("%s after the reload: %q, %v", k, v.Data, err)
		}
	}
}
