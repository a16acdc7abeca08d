package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issue writes a certificate of ca for name, valid from nb to na, into dir
// and returns its Files (trusting caFile).
func issue(t *testing.T, ca *CA, dir, name string, nb, na time.Time, caFile string) Files {
	t.Helper()
	c, k, err := ca.Issue(name, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	f := Files{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem"), CAFile: caFile}
	writeFile(t, f.CertFile, c)
	writeFile(t, f.KeyFile, k)
	return f
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, dir, name string) (*CA, string) {
	t.Helper()
	now := time.Now()
	ca, err := NewCA(name, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pem")
	writeFile(t, file, ca.PEM)
	return ca, file
}

// bump gives a file a modification time of its own, so that a rewrite
// within the file system's time granularity is still seen as a change.
func bump(t *testing.T, name string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(d)
	if err := os.Chtimes(name, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	now := time.Now()
	f := issue(t, ca, dir, "n1", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	s, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Leaf().SerialNumber
	if s.Leaf().SerialNumber.Cmp(first) != 0 {
		t.Fatal("the certificate changed with no change of its files")
	}
	// A new certificate for the same name: taken at the next look.
	issue(t, ca, dir, "n1", now.Add(-time.Hour), now.Add(2*time.Hour), caFile)
	bump(t, f.CertFile, time.Second)
	bump(t, f.KeyFile, time.Second)
	if got := s.Leaf(); got.SerialNumber.Cmp(first) == 0 || !got.NotAfter.After(now.Add(time.Hour+time.Minute)) {
		t.Fatalf("the rewritten certificate was not reloaded: serial %v, not after %v", got.SerialNumber, got.NotAfter)
	}
}

func TestFailedReloadKeepsTheOldCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	now := time.Now()
	f := issue(t, ca, dir, "n1", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	s, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := s.Leaf().SerialNumber
	// Half a write: the key file is cut short.
	k, _ := os.ReadFile(f.KeyFile)
	writeFile(t, f.KeyFile, k[:len(k)/2])
	bump(t, f.KeyFile, time.Second)
	if got := s.Leaf().SerialNumber; got.Cmp(good) != 0 {
		t.Fatalf("a failed reload replaced the certificate")
	}
	// An expired certificate is refused as a replacement too.
	issue(t, ca, dir, "n1", now.Add(-2*time.Hour), now.Add(-time.Hour), caFile)
	bump(t, f.CertFile, 2*time.Second)
	bump(t, f.KeyFile, 2*time.Second)
	if got := s.Leaf().SerialNumber; got.Cmp(good) != 0 {
		t.Fatalf("an expired certificate replaced the valid one")
	}
	// Once a good pair is written, it is taken.
	issue(t, ca, dir, "n1", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	bump(t, f.CertFile, 3*time.Second)
	bump(t, f.KeyFile, 3*time.Second)
	if got := s.Leaf().SerialNumber; got.Cmp(good) == 0 {
		t.Fatalf("the good certificate written after a failed reload was not taken")
	}
}

func TestLoadRefusesExpired(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	now := time.Now()
	f := issue(t, ca, dir, "n1", now.Add(-2*time.Hour), now.Add(-time.Hour), caFile)
	if _, err := Load(f, nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Load of an expired certificate: %v, want an expiry error", err)
	}
	if _, err := Load(Files{CertFile: f.CertFile}, nil); err == nil {
		t.Fatal("Load without a key file succeeded")
	}
}

// handshake runs one TLS handshake between srv and cli over a pipe and
// returns the server's and the client's errors and the server's state.
func handshake(t *testing.T, srv, cli *tls.Config) (serr, cerr error, st tls.ConnectionState) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	var sc *tls.Conn
	go func() {
		raw, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		sc = tls.Server(raw, srv)
		err = sc.Handshake()
		if err == nil {
			// Read the client's first byte: with TLS 1.3 the client's
			// certificate is checked after the client's handshake returns.
			_, err = io.ReadFull(sc, make([]byte, 1))
		}
		done <- err
	}()
	raw, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	cc := tls.Client(raw, cli)
	cerr = cc.Handshake()
	if cerr == nil {
		_, cerr = cc.Write([]byte{1})
	}
	if cerr != nil {
		raw.Close()
	}
	serr = <-done
	raw.Close()
	if sc != nil {
		st = sc.ConnectionState()
	}
	return serr, cerr, st
}

func TestServerAndClientConfigs(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := newCA(t, dir, "ca")
	other, otherFile := newCA(t, dir, "other")
	now := time.Now()
	srvFiles := issue(t, ca, dir, "n1", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	srv, err := Load(srvFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	sc, err := srv.ServerConfig(ServerOptions{ClientAuth: true, Verify: func(cs tls.ConnectionState) error {
		seen = Names(cs.PeerCertificates[0])
		if !HasName(cs.PeerCertificates[0], "n2") {
			return errors.New("not n2")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	client := func(f Files, verify func(*x509.Certificate) error) *tls.Config {
		s, err := Load(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.ClientConfig(verify)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := issue(t, ca, dir, "n2", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	serr, cerr, st := handshake(t, sc, client(good, func(c *x509.Certificate) error {
		if !HasName(c, "n1") {
			return errors.New("server is not n1")
		}
		return nil
	}))
	if serr != nil || cerr != nil || len(st.VerifiedChains) == 0 || !bytes.Equal(st.VerifiedChains[0][0].Raw, st.PeerCertificates[0].Raw) {
		t.Fatalf("good pair: server %v, client %v, verified chains %d", serr, cerr, len(st.VerifiedChains))
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("negotiated version %x, want TLS 1.3", st.Version)
	}
	// The server's name is checked by the client's verify.
	if serr, cerr, _ = handshake(t, sc, client(good, func(c *x509.Certificate) error {
		if !HasName(c, "n9") {
			return errors.New("server is not n9")
		}
		return nil
	})); cerr == nil {
		t.Error("the client accepted a server that is not the one it dialed")
	}
	// A certificate of the right CA naming someone else: refused by Verify.
	wrong := issue(t, ca, dir, "n3", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	if serr, _, _ = handshake(t, sc, client(wrong, nil)); serr == nil || !strings.Contains(serr.Error(), "not n2") {
		t.Errorf("client named n3: server %v, want refused by Verify (names seen %v)", serr, seen)
	}
	// Another CA's certificate, with the right name: refused by the chain.
	foreign := issue(t, other, t.TempDir(), "n2", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	if serr, _, _ = handshake(t, sc, client(foreign, nil)); serr == nil {
		t.Error("the server accepted a client certificate of another CA")
	}
	// The client refuses a server of another CA.
	if _, cerr, _ = handshake(t, sc, client(Files{CertFile: good.CertFile, KeyFile: good.KeyFile, CAFile: otherFile}, nil)); cerr == nil {
		t.Error("the client accepted a server certificate of another CA")
	}
	// An expired client certificate (the client loads it before it
	// expires; it is the server that sees it expired).
	exp := issue(t, ca, t.TempDir(), "n2", now.Add(-time.Hour), now.Add(time.Hour), caFile)
	es, err := Load(exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.now = func() time.Time { return now.Add(2 * time.Hour) }
	late := sc.Clone()
	late.Time = srv.now
	inner := late.GetConfigForClient
	late.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := inner(h)
		if c != nil {
			c.Time = srv.now
		}
		return c, err
	}
	ec, _ := es.ClientConfig(nil)
	ec.VerifyConnection = nil // the server's certificate expired too at that time; only the server's check matters here
	if serr, _, _ = handshake(t, late, ec); serr == nil || !strings.Contains(serr.Error(), "expired") {
		t.Errorf("expired client certificate: server %v, want an expiry error", serr)
	}
}

// WriteDev's two CAs: the peer CA signs the nodes' peer certificates
// (server and client auth, naming the node) and nothing else; the client
// CA signs the nodes' client-port certificates (valid for 127.0.0.1) and
// the client's, which is for client auth only and names no host, so that
// it can neither pose as a peer nor serve as a node.
func TestWriteDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	files, err := WriteDev(dir, []string{"n1", "n2"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := func(file string) *x509.CertPool {
		p, err := LoadPool(file)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	clientCA, peerCA := pool(files.CA), pool(files.PeerCA)
	verifies := func(f Files, p *x509.CertPool, usage x509.ExtKeyUsage) bool {
		_, err := VerifyChain([]*x509.Certificate{f.leaf(t)}, p, usage, time.Now())
		return err == nil
	}
	for _, n := range []string{"n1", "n2"} {
		node, peer := files.Nodes[n], files.Peers[n]
		if node.CAFile != files.CA || peer.CAFile != files.PeerCA {
			t.Errorf("%s: CA files %s and %s", n, node.CAFile, peer.CAFile)
		}
		if !verifies(node, clientCA, x509.ExtKeyUsageServerAuth) || node.leaf(t).VerifyHostname("127.0.0.1") != nil {
			t.Errorf("%s: its client-port certificate does not serve 127.0.0.1 under the client CA", n)
		}
		if !verifies(peer, peerCA, x509.ExtKeyUsageServerAuth) || !verifies(peer, peerCA, x509.ExtKeyUsageClientAuth) || !HasName(peer.leaf(t), n) {
			t.Errorf("%s: its peer certificate is not a mutual one of the peer CA naming it", n)
		}
		if verifies(node, peerCA, x509.ExtKeyUsageClientAuth) || verifies(peer, clientCA, x509.ExtKeyUsageServerAuth) {
			t.Errorf("%s: a certificate verifies under the other port's CA", n)
		}
	}
	client := files.Client.leaf(t)
	if !verifies(files.Client, clientCA, x509.ExtKeyUsageClientAuth) {
		t.Error("the client certificate is not one of the client CA")
	}
	if verifies(files.Client, peerCA, x509.ExtKeyUsageClientAuth) || verifies(files.Client, clientCA, x509.ExtKeyUsageServerAuth) {
		t.Error("the client certificate passes as a peer's or a server's")
	}
	if len(client.DNSNames)+len(client.IPAddresses) != 0 || client.Subject.CommonName != "client" {
		t.Errorf("the client certificate names hosts %v %v, or is not called client", client.DNSNames, client.IPAddresses)
	}
	for _, f := range []Files{files.Nodes["n1"], files.Peers["n1"], files.Client} {
		if fi, err := os.Stat(f.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f.KeyFile, fi.Mode(), err)
		}
	}
	for _, names := range [][]string{{"client"}, {"ca"}, {"a", "a-peer"}} {
		if _, err := WriteDev(t.TempDir(), names, time.Now()); err == nil {
			t.Errorf("nodes %q: their files would clash, and were allowed", names)
		}
	}
}

func (f Files) leaf(t *testing.T) *x509.Certificate {
	s, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.Leaf()
}

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:7070", true},
		{"127.1.2.3:7070", true},
		{"[::1]:7070", true},
		{"localhost:7070", true},
		{"0.0.0.0:7070", false},
		{"10.0.0.5:7070", false},
		{"[::]:7070", false},
		{"example.com:7070", false},
		{"127.0.0.1", false}, // no port: not an address
	} {
		if got := Loopback(tc.addr); got != tc.want {
			t.Errorf("Loopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
