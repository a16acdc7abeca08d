// Package certs holds the TLS material of a node and of its clients: it
// loads a certificate, its key and a CA pool from files, reloads them when
// the files change (checked on every handshake, by modification time and
// size: a stat per file, no goroutine), and builds the tls.Configs of both
// ends of a connection. dev.go makes a throwaway CA for development.
//
// It lives under internal/ rather than server/ because the peer transport,
// the Go client and the command use it as much as the node runtime does,
// and none of those may import server/.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
)

// MinVersion is the oldest TLS version either end accepts; Go prefers 1.3
// when both ends speak it.
const MinVersion = tls.VersionTLS12

// Files names the PEM files of one end: its certificate (the leaf first,
// then any intermediates), its private key, and the CA certificates it
// trusts to sign the other end's (optional where the other end is not
// verified).
type Files struct {
	CertFile, KeyFile, CAFile string
}

// stamp tells whether a file changed: its modification time and size.
type stamp struct {
	mod  time.Time
	size int64
}

// Source is the certificate, key and CA pool of Files as they are now: it
// reloads them when a file's stamp changed since the last load. A reload
// that fails (a file half written, a key that does not match, a
// certificate already expired) keeps what was loaded before and logs; the
// next change of a file tries again.
type Source struct {
	files Files
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	stamps [3]stamp
	cert   *tls.Certificate
	pool   *x509.CertPool // nil without CAFile
}

// Load loads f (CertFile and KeyFile are required) and returns a Source
// that keeps them current. A certificate past its NotAfter is refused.
func Load(f Files, log *slog.Logger) (*Source, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("caspaxos/certs: a certificate file and a key file are both required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: f, log: log, now: time.Now}
	st, cert, pool, err := s.load()
	if err != nil {
		return nil, err
	}
	s.stamps, s.cert, s.pool = st, cert, pool
	return s, nil
}

// Files returns the files s loads.
func (s *Source) Files() Files { return s.files }

// stamps returns the stamps of s's files; a missing file has the zero stamp.
func (s *Source) stampFiles() [3]stamp {
	var out [3]stamp
	for i, name := range []string{s.files.CertFile, s.files.KeyFile, s.files.CAFile} {
		if name == "" {
			continue
		}
		if fi, err := os.Stat(name); err == nil {
			out[i] = stamp{fi.ModTime(), fi.Size()}
		}
	}
	return out
}

// load reads every file, stamped before reading: a file changed while it
// is read has a stamp older than its content, and is read again at the
// next handshake.
func (s *Source) load() ([3]stamp, *tls.Certificate, *x509.CertPool, error) {
	st := s.stampFiles()
	cert, err := tls.LoadX509KeyPair(s.files.CertFile, s.files.KeyFile)
	if err != nil {
		return st, nil, nil, fmt.Errorf("caspaxos/certs: %s and %s: %w", s.files.CertFile, s.files.KeyFile, err)
	}
	if now := s.now(); now.After(cert.Leaf.NotAfter) {
		return st, nil, nil, fmt.Errorf("caspaxos/certs: %s expired at %s", s.files.CertFile, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var pool *x509.CertPool
	if s.files.CAFile != "" {
		if pool, err = LoadPool(s.files.CAFile); err != nil {
			return st, nil, nil, err
		}
	}
	return st, &cert, pool, nil
}

// current returns the certificate and pool, reloaded first if a file
// changed since the last attempt.
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stampFiles() == s.stamps {
		return s.cert, s.pool
	}
	st, cert, pool, err := s.load()
	s.stamps = st // a failed reload is logged once per change of the files
	if err != nil {
		s.log.Error("cannot reload a TLS certificate; the one loaded before stays in use", "cert_file", s.files.CertFile, "err", err)
		return s.cert, s.pool
	}
	s.cert, s.pool = cert, pool
	s.log.Info("reloaded a TLS certificate", "cert_file", s.files.CertFile, "not_after", cert.Leaf.NotAfter)
	return s.cert, s.pool
}

// Leaf returns the certificate in use, reloaded first if its files changed.
func (s *Source) Leaf() *x509.Certificate {
	c, _ := s.current()
	return c.Leaf
}

// LoadPool reads the PEM certificates of file into a new pool.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("caspaxos/certs: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ServerOptions shape a server's tls.Config.
type ServerOptions struct {
	// ClientAuth requires a client certificate signed by a CA of CAFile.
	ClientAuth bool
	// NextProtos are the ALPN protocols offered, most preferred first.
	NextProtos []string
	// Verify, if set, is called after the standard checks of every
	// handshake (VerifyConnection): it may refuse the other end.
	Verify func(tls.ConnectionState) error
}

// ServerConfig returns the tls.Config of a listener: each handshake takes
// the certificate and pool as they are then.
func (s *Source) ServerConfig(o ServerOptions) (*tls.Config, error) {
	if o.ClientAuth && s.files.CAFile == "" {
		return nil, errors.New("caspaxos/certs: client certificates need a trusted CA file")
	}
	base := &tls.Config{MinVersion: MinVersion, NextProtos: o.NextProtos}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := s.current()
		c := &tls.Config{MinVersion: MinVersion, Certificates: []tls.Certificate{*cert}, NextProtos: o.NextProtos,
			VerifyConnection: o.Verify}
		if o.ClientAuth {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
		}
		return c, nil
	}
	return base, nil
}

// ClientConfig returns the tls.Config of a dialer that presents s's
// certificate and verifies the server's against s's pool (CAFile is
// required) as it is at each handshake, then calls verify, if set, with the
// server's verified leaf. The server's name is not compared with the
// address dialed: peers are dialed by address and named by their
// certificates, which verify checks.
func (s *Source) ClientConfig(verify func(*x509.Certificate) error) (*tls.Config, error) {
	if s.files.CAFile == "" {
		return nil, errors.New("caspaxos/certs: verifying a server needs a trusted CA file")
	}
	return &tls.Config{
		MinVersion: MinVersion,
		// Verified below, against the pool as it is now (a reloaded CA
		// file takes effect at the next handshake) and without a host
		// name: the standard check would use a pool fixed here.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _ := s.current()
			return c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := s.current()
			leaf, err := VerifyChain(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth, s.now())
			if err == nil && verify != nil {
				err = verify(leaf)
			}
			return err
		},
	}, nil
}

// VerifyChain verifies that chain (leaf first, as a handshake gives it)
// leads to a root of pool at now, for usage; it returns the leaf.
func VerifyChain(chain []*x509.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("caspaxos/certs: no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	return chain[0], nil
}

// Names returns the names a certificate gives its holder: its DNS SANs and
// its subject's common name.
func Names(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	if c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// HasName reports whether c names name (a DNS SAN or the common name).
func HasName(c *x509.Certificate, name string) bool {
	return name != "" && slices.Contains(Names(c), name)
}

// ClientFiles returns the tls.Config of a client of the client port: the
// servers' certificates verified against caFile (the system's roots if
// empty), and the certificate of certFile and keyFile presented if given.
// It is loaded once: a client's life is short.
func ClientFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: MinVersion}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("caspaxos/certs: a client certificate needs both its file and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("caspaxos/certs: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// pemBlock encodes one PEM block.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Loopback reports whether addr (host:port) is on this host only
// (localhost or a loopback IP): the one place where a plain connection
// crosses no network, so that a node need not warn about it, nor a client
// refuse to send credentials over it.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
