package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
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
