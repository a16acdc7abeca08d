package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/internal/connsplit"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// pki is a CA with certificates for the members n1..n3, a non-member n9,
// an expired n2, and n2 signed by another CA.
type pki struct {
	dir               string
	ca                string // the CA file
	files             map[string]certs.Files
	expired, foreign  tls.Certificate
	member, nonMember tls.Certificate // n2's and n9's, as a client presents them
}

func writeCert(t *testing.T, ca *certs.CA, dir, name string, nb, na time.Time) (certs.Files, tls.Certificate) {
	t.Helper()
	c, k, err := ca.Issue(name, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	f := certs.Files{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem")}
	if err := os.WriteFile(f.CertFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return f, pair
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	now := time.Now()
	p := &pki{dir: t.TempDir(), files: map[string]certs.Files{}}
	ca, err := certs.NewCA("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("other CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p.ca = filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.ca, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		f, pair := writeCert(t, ca, p.dir, n, now.Add(-time.Hour), now.Add(time.Hour))
		f.CAFile = p.ca
		p.files[n] = f
		if n == "n2" {
			p.member = pair
		}
	}
	_, p.nonMember = writeCert(t, ca, p.dir, "n9", now.Add(-time.Hour), now.Add(time.Hour))
	_, p.expired = writeCert(t, ca, t.TempDir(), "n2", now.Add(-2*time.Hour), now.Add(-time.Hour))
	_, p.foreign = writeCert(t, other, t.TempDir(), "n2", now.Add(-time.Hour), now.Add(time.Hour))
	return p
}

var testNames = map[protocol.NodeID]string{1: "n1", 2: "n2", 3: "n3"}

// newTLSCluster is newCluster with peer TLS, every node knowing the
// members' names.
func newTLSCluster(t *testing.T, p *pki, n int, mod func(*Config)) *cluster {
	t.Helper()
	c := newClusterWith(t, n, func(cfg *Config) {
		src, err := certs.Load(p.files[testNames[cfg.Self]], nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = src
		if mod != nil {
			mod(cfg)
		}
	})
	for _, tr := range c.tr {
		tr.SetNames(testNames)
	}
	return c
}

func TestTLSLinksCarryMessagesAndForwards(t *testing.T) {
	p := newPKI(t)
	c := newTLSCluster(t, p, 3, nil)
	waitFor(t, "links up", func() bool {
		return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) && c.tr[3].Reachable(1) && c.tr[1].Reachable(3)
	})
	m := protocol.Message{Kind: protocol.MsgPrepare, From: 1, To: 2, Key: "k", Ballot: protocol.Ballot{Counter: 1, Proposer: 1}}
	if err := c.tr[1].Send(2, []protocol.Message{m}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message delivered", func() bool { return c.nodes[2].count() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.tr[1].Forward(ctx, 3, kv.Op{Kind: kv.OpIncrement, Key: "k", Delta: 1}); err != nil {
		t.Fatalf("forward over TLS: %v", err)
	}
	// The peer gRPC services answer a member over TLS.
	src, err := certs.Load(p.files["n1"], nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := src.ClientConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := healthCheck(c.addrs[2], credentials.NewTLS(cfg)); err != nil {
		t.Fatalf("gRPC from a member over TLS: %v", err)
	}
}

func healthCheck(addr string, creds credentials.TransportCredentials) error {
	gc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer gc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(gc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// The TLS rows of the peer port's rejection matrix (docs/security.md):
// each connection is refused or dropped with a logged error, and nothing
// of it is delivered.
func TestTLSPeerPortRefusals(t *testing.T) {
	p := newPKI(t)
	logs := &syncBuffer{}
	c := newTLSCluster(t, p, 3, func(cfg *Config) {
		if cfg.Self == 1 {
			// Debug: refused handshakes past the first are logged there.
			cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	})
	waitFor(t, "links up", func() bool { return c.tr[1].Reachable(2) && c.tr[2].Reachable(1) })
	frame := func(f *peerpb.Frame) []byte {
		b, err := appendFrame(nil, f, testMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A forged accept: it claims to come from node 3.
	accept := protocol.Message{Kind: protocol.MsgAccept, From: 3, To: 1, Key: "k", Ballot: protocol.Ballot{Counter: 9, Proposer: 3},
		State: protocol.State{Value: []byte("forged"), Version: 1}}
	forged := append(frame(&peerpb.Frame{From: 3}), frame(&peerpb.Frame{From: 3, Messages: []*peerpb.Message{ToWire(accept)}})...)
	pool, err := certs.LoadPool(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	tlsTo := func(cert *tls.Certificate) *tls.Config {
		c := &tls.Config{RootCAs: pool, ServerName: "n1", NextProtos: []string{peerALPN}}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return c
	}
	before := c.nodes[1].count()
	for _, tc := range []struct {
		name     string
		tls      *tls.Config // nil: plain text
		log      string
		answered bool // the preface is answered
	}{
		{"plain text to a TLS peer port", nil, "TLS handshake failed", false},
		{"no client certificate", tlsTo(nil), "TLS handshake failed", false},
		{"a certificate of another CA", tlsTo(&p.foreign), "TLS handshake failed", false},
		{"an expired certificate", tlsTo(&p.expired), "TLS handshake failed", false},
		{"a certificate naming a non-member", tlsTo(&p.nonMember), "names no member", false},
		{"a member's certificate, a hello naming another member", tlsTo(&p.member), "does not name the member its hello names", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged := strings.Count(logs.String(), tc.log)
			raw, err := net.Dial("tcp", c.addrs[1])
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
			var conn net.Conn = raw
			if tc.tls != nil {
				tconn := tls.Client(raw, tc.tls)
				// With TLS 1.3 the server judges the client's certificate
				// after the client's handshake returns: the refusal shows
				// as the connection's end below.
				_ = tconn.Handshake()
				conn = tconn
			}
			_, _ = conn.Write(framePreface)
			_, _ = conn.Write(forged)
			got, _ := io.ReadAll(conn)
			// Only a member's certificate gets as far as the preface's
			// answer; its hello is judged after.
			if answered := bytes.Contains(got, framePreface); answered != tc.answered {
				t.Errorf("the receiver answered %q", got)
			}
			waitFor(t, "log line", func() bool { return strings.Count(logs.String(), tc.log) > logged })
			if n := c.nodes[1].count(); n != before {
				t.Fatalf("%d messages delivered", n-before)
			}
		})
	}
	// The member links are unharmed.
	m := protocol.Message{Kind: protocol.MsgPrepare, From: 2, To: 1, Key: "k", Ballot: protocol.Ballot{Counter: 1, Proposer: 2}}
	if err := c.tr[2].Send(1, []protocol.Message{m}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a member's message delivered", func() bool { return c.nodes[1].count() == before+1 })
}

// The Admin and GC services on a TLS peer port: plain gRPC, a client
// without a certificate and one with a non-member's are refused; a
// non-member SetNames removed is refused at once.
func TestTLSPeerGRPCRefusals(t *testing.T) {
	p := newPKI(t)
	c := newTLSCluster(t, p, 2, nil)
	if err := healthCheck(c.addrs[1], insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Errorf("plain gRPC to a TLS peer port: %v, want Unavailable", err)
	}
	pool, err := certs.LoadPool(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "a non-member's": &p.nonMember,
		"another CA's": &p.foreign} {
		cfg := &tls.Config{RootCAs: pool, ServerName: "n1"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		if err := healthCheck(c.addrs[1], credentials.NewTLS(cfg)); err == nil {
			t.Errorf("gRPC with %s certificate was answered", name)
		}
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "n1", Certificates: []tls.Certificate{p.member}}
	if err := healthCheck(c.addrs[1], credentials.NewTLS(cfg)); err != nil {
		t.Fatalf("gRPC with a member's certificate: %v", err)
	}
	if err := c.tr[1].authorize(peerContext(p)); err != nil {
		t.Fatalf("a call with a member's certificate: %v", err)
	}
	// The interceptor checks each call too: a member removed from the
	// names loses its calls, even on a connection made before.
	c.tr[1].SetNames(map[protocol.NodeID]string{1: "n1", 3: "n3"})
	err = c.tr[1].authorize(peerContext(p))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a call with a removed member's certificate: %v, want PermissionDenied", err)
	}
}

// peerContext is the context of a call on a connection presenting n2's
// verified certificate, as gRPC gives it to an interceptor.
func peerContext(p *pki) context.Context {
	leaf := p.member.Leaf
	st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: st}})
}

// A peer's gRPC connection (the GC service's) checks the node it reaches,
// as its link does: a node at member n2's address presenting another
// certificate of the peer CA (n9's) gets no call; n2's own does.
func TestTLSPeerGRPCVerifiesTheMember(t *testing.T) {
	p := newPKI(t)
	serveAs := func(name string) string {
		t.Helper()
		src, err := certs.Load(certs.Files{CertFile: filepath.Join(p.dir, name+".pem"), KeyFile: filepath.Join(p.dir, name+"-key.pem"), CAFile: p.ca}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := src.ServerConfig(certs.ServerOptions{ClientAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
		healthpb.RegisterHealthServer(s, health.NewServer())
		go func() { _ = s.Serve(lis) }()
		t.Cleanup(s.Stop)
		return lis.Addr().String()
	}
	src, err := certs.Load(p.files["n1"], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		serves   string
		answered bool
	}{{"n9", false}, {"n2", true}} {
		tr, err := New(Config{Self: 1, Peers: map[protocol.NodeID]string{2: serveAs(tc.serves)}, TLS: src}, &node{})
		if err != nil {
			t.Fatal(err)
		}
		tr.SetNames(testNames)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = healthpb.NewHealthClient(tr.set().links[2].conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		tr.Close()
		if (err == nil) != tc.answered {
			t.Errorf("gRPC to n2's address, served with %s's certificate: %v", tc.serves, err)
		}
	}
}

// Refused handshakes on the peer port are logged as a warning at most once
// per refusedLogInterval, which counts those logged at debug level since.
func TestRefusedHandshakesLogRateLimited(t *testing.T) {
	logs := &syncBuffer{}
	tr, err := New(Config{Self: 1, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, &node{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	clock := tr.started
	tr.now = func() time.Time { return clock }
	conn, other := net.Pipe()
	defer conn.Close()
	defer other.Close()
	warnings := func() int { return strings.Count(logs.String(), "level=WARN") }
	for range 3 {
		tr.refusedHandshake(conn, io.EOF)
	}
	tr.refusedHandshake(conn, connsplit.ErrTooManyHandshakes)
	if w, d := warnings(), strings.Count(logs.String(), "level=DEBUG"); w != 1 || d != 3 {
		t.Fatalf("4 refusals at once: %d warnings and %d debug lines, want 1 and 3:\n%s", w, d, logs.String())
	}
	if !strings.Contains(logs.String(), "too many TLS handshakes under way") {
		t.Errorf("a refusal past the bound does not say so:\n%s", logs.String())
	}
	clock = clock.Add(refusedLogInterval)
	tr.refusedHandshake(conn, io.EOF)
	if w := warnings(); w != 2 || !strings.Contains(logs.String(), "refused_since_last_warning=3") {
		t.Fatalf("a refusal an interval later: %d warnings, want 2 counting the 3 in between:\n%s", w, logs.String())
	}
	if got := tr.Stats().RefusedConns; got != 5 {
		t.Errorf("RefusedConns %d, want 5", got)
	}
}
