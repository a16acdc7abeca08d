package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority made for development and tests: an ECDSA
// P-256 key and a self-signed certificate.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is Cert encoded, as a trusted CA file holds it.
	PEM []byte
}

// serial returns a random 128-bit certificate serial number.
func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// NewCA makes a CA named name, valid from notBefore to notAfter.
func NewCA(name string, notBefore, notAfter time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pemBlock("CERTIFICATE", der)}, nil
}

// Issue makes a node's certificate and key (PEM) for name, valid from
// notBefore to notAfter, for both ends of a connection (server and client
// auth: a peer certificate is presented by the dialing node too). It names
// name (common name and DNS SAN), localhost, 127.0.0.1 and ::1: the
// addresses a development cluster listens on.
func (ca *CA) Issue(name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
}

// IssueClient makes a client's certificate and key (PEM) for name (its
// common name, the user it authenticates as), valid from notBefore to
// notAfter: client auth only, and no DNS or IP name, so that it cannot
// serve as a server's certificate.
func (ca *CA) IssueClient(name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// issue signs tmpl (its serial number set here) for a new key.
func (ca *CA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

// DevValidity is how long WriteDev's certificates are valid: a throwaway
// cluster's life, with room to spare.
const DevValidity = 365 * 24 * time.Hour

// The file names WriteDev writes besides each node's. DevPeerCAFile is
// written last: its presence says the set is whole.
const (
	DevCAFile     = "ca.pem"
	DevPeerCAFile = "peer-ca.pem"
)

// DevFiles are the files WriteDev wrote.
type DevFiles struct {
	// CA is the client CA's certificate: the trusted CA file of the
	// clients and of the nodes' client ports. PeerCA is the peer CA's: the
	// peer CA file of every node, and of nothing else.
	CA, PeerCA string
	// Nodes holds each node's client-port certificate and key (CAFile:
	// CA), Peers its peer-port ones (CAFile: PeerCA), by name; Client
	// those of a client (CAFile: CA).
	Nodes, Peers map[string]Files
	Client       Files
}

// WriteDev makes two throwaway CAs and writes under dir (created 0700;
// keys 0600):
//
//   - ca.pem, the client CA, which signs <name>.pem (and <name>-key.pem),
//     each node's client-port certificate, and client.pem (and
//     client-key.pem), a client's (client auth only, named "client");
//   - peer-ca.pem, the peer CA, which signs <name>-peer.pem (and
//     <name>-peer-key.pem), each node's peer-port certificate, and
//     nothing else.
//
// Two CAs, because a node takes any certificate of its peer CA from a
// node not yet added (--join) and every certificate of it names a possible
// member: the client certificate, handed to users, must not be one of
// them. The CAs' keys are not kept: nothing more can be issued.
func WriteDev(dir string, nodes []string, now time.Time) (DevFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return DevFiles{}, fmt.Errorf("caspaxos/certs: %w", err)
	}
	nb, na := now.Add(-time.Hour), now.Add(DevValidity)
	clientCA, err := NewCA("caspaxos dev client CA", nb, na)
	if err != nil {
		return DevFiles{}, err
	}
	peerCA, err := NewCA("caspaxos dev peer CA", nb, na)
	if err != nil {
		return DevFiles{}, err
	}
	out := DevFiles{CA: filepath.Join(dir, DevCAFile), PeerCA: filepath.Join(dir, DevPeerCAFile),
		Nodes: map[string]Files{}, Peers: map[string]Files{}}
	taken := map[string]bool{DevCAFile: true, DevPeerCAFile: true}
	// put issues name's certificate of ca and writes it as base.pem and
	// base-key.pem.
	put := func(issue func(*CA, string, time.Time, time.Time) ([]byte, []byte, error), ca *CA, name, base, caFile string) (Files, error) {
		f := Files{CertFile: filepath.Join(dir, base+".pem"), KeyFile: filepath.Join(dir, base+"-key.pem"), CAFile: caFile}
		for _, file := range []string{base + ".pem", base + "-key.pem"} {
			if taken[file] {
				return Files{}, fmt.Errorf("caspaxos/certs: two dev files would be called %s: rename a node", file)
			}
			taken[file] = true
		}
		c, k, err := issue(ca, name, nb, na)
		if err != nil {
			return Files{}, err
		}
		if err := os.WriteFile(f.CertFile, c, 0o644); err != nil {
			return Files{}, fmt.Errorf("caspaxos/certs: %w", err)
		}
		if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
			return Files{}, fmt.Errorf("caspaxos/certs: %w", err)
		}
		return f, nil
	}
	if out.Client, err = put((*CA).IssueClient, clientCA, "client", "client", out.CA); err != nil {
		return DevFiles{}, err
	}
	for _, n := range nodes {
		if out.Nodes[n], err = put((*CA).Issue, clientCA, n, n, out.CA); err != nil {
			return DevFiles{}, err
		}
		if out.Peers[n], err = put((*CA).Issue, peerCA, n, n+"-peer", out.PeerCA); err != nil {
			return DevFiles{}, err
		}
	}
	if err := os.WriteFile(out.CA, clientCA.PEM, 0o644); err != nil {
		return DevFiles{}, fmt.Errorf("caspaxos/certs: %w", err)
	}
	if err := os.WriteFile(out.PeerCA, peerCA.PEM, 0o644); err != nil {
		return DevFiles{}, fmt.Errorf("caspaxos/certs: %w", err)
	}
	return out, nil
}
