package daemon

import (
	"crypto/tls"
	"net"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/internal/connsplit"
)

// TLSConfig names the certificate files of the node's two ports. Every
// file is PEM; certificates are reloaded when their files change, without
// a restart (internal/certs). Nothing set: both ports are plain TCP.
type TLSConfig struct {
	// CertFile and KeyFile make the client port (gRPC and HTTP) serve TLS
	// only. With ClientCertAuth, a client must present a certificate
	// signed by a CA of TrustedCAFile.
	CertFile, KeyFile string
	TrustedCAFile     string
	ClientCertAuth    bool
	// PeerCertFile, PeerKeyFile and PeerTrustedCAFile make the peer port
	// speak mutual TLS only: every node presents its certificate, which
	// must be signed by a CA of PeerTrustedCAFile and name the node (DNS
	// SAN or common name equal to its member name), and refuses any peer
	// whose certificate names no member (transport/tls.go).
	PeerCertFile, PeerKeyFile, PeerTrustedCAFile string
}

// check returns the problems of c.
func (c TLSConfig) check() []Problem {
	var probs []Problem
	need := func(ok bool, format string, args ...any) {
		if !ok {
			probs = append(probs, problem(format, args...))
		}
	}
	need((c.CertFile == "") == (c.KeyFile == ""), "%s and %s go together", Field("TLS.CertFile"), Field("TLS.KeyFile"))
	need(!c.ClientCertAuth || c.CertFile != "" && c.TrustedCAFile != "", "%s needs %s, %s and %s",
		Field("TLS.ClientCertAuth"), Field("TLS.CertFile"), Field("TLS.KeyFile"), Field("TLS.TrustedCAFile"))
	peer := 0
	for _, f := range []string{c.PeerCertFile, c.PeerKeyFile, c.PeerTrustedCAFile} {
		if f != "" {
			peer++
		}
	}
	need(peer == 0 || peer == 3, "%s, %s and %s go together (mutual TLS between peers)",
		Field("TLS.PeerCertFile"), Field("TLS.PeerKeyFile"), Field("TLS.PeerTrustedCAFile"))
	return probs
}

// tlsSources are the loaded certificates of both ports; nil: plain.
type tlsSources struct {
	client, peer *certs.Source
}

// loadTLS loads the certificate files of cfg.TLS.
func (d *Daemon) loadTLS() error {
	c := d.cfg.TLS
	var err error
	if c.CertFile != "" {
		if d.tls.client, err = certs.Load(certs.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: c.TrustedCAFile}, d.log); err != nil {
			return &ConfigError{Problems: []Problem{problem("%s: %v", Field("TLS.CertFile"), err)}}
		}
	}
	if c.PeerCertFile != "" {
		if d.tls.peer, err = certs.Load(certs.Files{CertFile: c.PeerCertFile, KeyFile: c.PeerKeyFile, CAFile: c.PeerTrustedCAFile}, d.log); err != nil {
			return &ConfigError{Problems: []Problem{problem("%s: %v", Field("TLS.PeerCertFile"), err)}}
		}
	}
	return nil
}

// clientListener serves TLS on the client port when it is configured:
// gRPC clients negotiate "h2" (ALPN), HTTP clients get "http/1.1" (even
// those that offer h2 too, as curl does: the server's order wins) or
// nothing; each gets the *tls.Conn, so that HTTP handlers see r.TLS.
func (d *Daemon) clientListener(lis net.Listener) (*connsplit.Listener, error) {
	if d.tls.client == nil {
		// gRPC connections begin with the HTTP/2 client preface.
		return connsplit.New(lis, []byte("PRI"), d.cfg.Timers.SniffTimeout), nil
	}
	cfg, err := d.tls.client.ServerConfig(certs.ServerOptions{ClientAuth: d.cfg.TLS.ClientCertAuth,
		NextProtos: []string{"http/1.1", "h2"}})
	if err != nil {
		return nil, err
	}
	// Handshakes are not bounded here: the client port takes many more
	// connections than the peer port, as its plain sniffing does.
	return connsplit.NewTLS(lis, cfg, d.cfg.Timers.SniffTimeout, 0, func(cs tls.ConnectionState) bool { return cs.NegotiatedProtocol == "h2" },
		func(conn net.Conn, err error) {
			d.log.Debug("refused a client connection: TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		}), nil
}

// peersUnauthenticated is the warning of a node whose peer port is plain
// TCP on an address other hosts can reach: anyone who reaches it can
// pose as a member (forge protocol messages, call Admin.SetState).
const peersUnauthenticated = "peers are unauthenticated: the peer port is plain TCP on a non-loopback address (set --peer-cert-file, --peer-key-file and --peer-trusted-ca-file)"

// credentialsInClear is the warning of a node with auth enabled whose
// client port is plain TCP on an address other hosts can reach: passwords
// and tokens cross the network readable by anyone on the path.
const credentialsInClear = "credentials travel in clear: auth is enabled and the client port is plain TCP on a non-loopback address (set --cert-file and --key-file)"

// warnings says what is wrong with the node without making it unhealthy.
func (d *Daemon) warnings() []string {
	var out []string
	if d.tls.peer == nil && !certs.Loopback(d.cfg.PeerAddr) {
		out = append(out, peersUnauthenticated)
	}
	if d.tls.client == nil && !certs.Loopback(d.cfg.ClientAddr) && d.authz != nil && d.authz.LastEnabled() {
		out = append(out, credentialsInClear)
	}
	return out
}
