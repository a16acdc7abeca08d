package clientapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// localBackend gives the Guard the test backend's registers.
type localBackend struct{ *clientapitest.Backend }

func (l localBackend) Local(string) (protocol.State, error) { return protocol.State{}, nil }

// Seen and SetSeen: this test never loses the quorum, so what a node
// keeps of its reads is never looked at.
func (l localBackend) Seen() (auth.Seen, bool, error) { return auth.Seen{}, false, nil }
func (l localBackend) SetSeen(auth.Seen) error        { return nil }

// certFor makes a CA and a client certificate for cn signed by it.
func certFor(t *testing.T, cn string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCertificateCommonName: with auth enabled, a verified client
// certificate authenticates the user its CN names, over HTTP
// (r.TLS.VerifiedChains) and gRPC (credentials.TLSInfo); a CN naming no
// user is unauthenticated.
func TestCertificateCommonName(t *testing.T) {
	ctx := context.Background()
	b := localBackend{clientapitest.New()}
	g, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost}, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		g.AddUser(ctx, auth.RootUser, "pw"), g.AddUser(ctx, "alice", "pw"), g.AddRole(ctx, "app"),
		g.GrantPerm(ctx, "app", auth.Grant{Perm: auth.PermReadWrite, Key: "app/", Prefix: true}),
		g.GrantRole(ctx, "alice", "app"), g.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		cn, key string
		http    int
		grpc    codes.Code
	}{
		{"alice", "app/x", http.StatusOK, codes.OK},
		{"alice", "other", http.StatusForbidden, codes.PermissionDenied},
		{"mallory", "app/x", http.StatusUnauthorized, codes.Unauthenticated},
	} {
		pool, cert := certFor(t, tc.cn)
		srv := httptest.NewUnstartedServer(clientapi.NewHTTP(clientapi.HTTPConfig{Limits: fuzzLimits, Guard: g}, b))
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		srv.StartTLS()
		hc := srv.Client()
		hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/kv/"+tc.key, strings.NewReader("v"))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.http {
			t.Errorf("HTTP, CN %s, put %s: %d, want %d", tc.cn, tc.key, resp.StatusCode, tc.http)
		}
		srv.Close()

		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
			Certificates: []tls.Certificate{serverCert(t, srv)}})))
		clientapi.RegisterGRPC(gs, clientapi.GRPCConfig{Limits: fuzzLimits, Guard: g}, b)
		go func() { _ = gs.Serve(lis) }()
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{cert}})))
		if err != nil {
			t.Fatal(err)
		}
		_, err = caspaxospb.NewKVClient(conn).Put(ctx, &caspaxospb.PutRequest{Key: []byte(tc.key), Value: []byte("v")})
		if status.Code(err) != tc.grpc {
			t.Errorf("gRPC, CN %s, put %s: %v, want %v", tc.cn, tc.key, err, tc.grpc)
		}
		conn.Close()
		gs.Stop()
	}
}

// serverCert is httptest's server certificate (for example.com), reused
// for the gRPC server.
func serverCert(t *testing.T, srv *httptest.Server) tls.Certificate {
	t.Helper()
	return srv.TLS.Certificates[0]
}
