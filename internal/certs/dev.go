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

// Issue makes a certificate and key (PEM) for name, valid from notBefore to
// notAfter, for both ends of a connection (server and client auth). It
// names name (common name and DNS SAN), localhost, 127.0.0.1 and ::1: the
// addresses a development cluster listens on.
func (ca *CA) Issue(name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("caspaxos/certs: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
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

// DevFiles are the files WriteDev wrote.
type DevFiles struct {
	// CA is the CA's certificate: the trusted CA file of every end.
	CA string
	// Nodes holds each node's certificate and key (Files with CA set),
	// by name; Client those of a client.
	Nodes  map[string]Files
	Client Files
}

// WriteDev makes a throwaway CA and a certificate for each node and one
// for a client, and writes them under dir (created 0700; keys 0600):
// ca.pem, <name>.pem and <name>-key.pem for each node, client.pem and
// client-key.pem. The CA's key is not kept: nothing more can be issued.
func WriteDev(dir string, nodes []string, now time.Time) (DevFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return DevFiles{}, fmt.Errorf("caspaxos/certs: %w", err)
	}
	ca, err := NewCA("caspaxos dev CA", now.Add(-time.Hour), now.Add(DevValidity))
	if err != nil {
		return DevFiles{}, err
	}
	out := DevFiles{CA: filepath.Join(dir, "ca.pem"), Nodes: map[string]Files{}}
	if err := os.WriteFile(out.CA, ca.PEM, 0o644); err != nil {
		return DevFiles{}, fmt.Errorf("caspaxos/certs: %w", err)
	}
	write := func(name string) (Files, error) {
		c, k, err := ca.Issue(name, now.Add(-time.Hour), now.Add(DevValidity))
		if err != nil {
			return Files{}, err
		}
		f := Files{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem"), CAFile: out.CA}
		if err := os.WriteFile(f.CertFile, c, 0o644); err != nil {
			return Files{}, fmt.Errorf("caspaxos/certs: %w", err)
		}
		if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
			return Files{}, fmt.Errorf("caspaxos/certs: %w", err)
		}
		return f, nil
	}
	for _, n := range nodes {
		if n == "client" || n == "ca" {
			return DevFiles{}, fmt.Errorf("caspaxos/certs: node name %q is taken by the dev files", n)
		}
		if out.Nodes[n], err = write(n); err != nil {
			return DevFiles{}, err
		}
	}
	if out.Client, err = write("client"); err != nil {
		return DevFiles{}, err
	}
	return out, nil
}
