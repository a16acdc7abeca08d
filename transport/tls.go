package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/protocol"
)

// With Config.TLS, the peer port speaks mutual TLS and nothing else. Both
// ends present a certificate signed by a CA of the peer CA file, and each
// checks that the other's names a member (a DNS SAN or the common name
// equal to the member's name, as the membership lists it):
//
//   - the listener's handshake refuses a certificate that names no node of
//     the membership this node uses, before anything else is read; a node
//     that is no member yet (started with --join: SetNames was given no
//     names) takes any certificate of the CA, for the controller that adds
//     it knows it and it knows nobody yet;
//   - a link's hello names its sender's node ID; the connection is dropped
//     unless the certificate names that ID's member;
//   - a link checks that the peer it dialed presents the certificate of the
//     member it meant to reach;
//   - the gRPC services on the port (Admin and GC) refuse a call whose
//     connection has no verified certificate naming a member (the
//     interceptors below: defense in depth behind the handshake's check).
//
// After the handshake the connection is split by ALPN: "h2" is gRPC, the
// links offer peerALPN.
const peerALPN = "caspaxos-peer/1"

// errNotMember: a peer's certificate names no member.
var errNotMember = errors.New("caspaxos/transport: the peer's certificate names no member")

// SetNames gives the members' names (ID to name, this node's included),
// which their certificates must carry. An empty map means this node is no
// member yet: any certificate of the peer CA is taken. Call it before
// SetPeers with the same membership, so that a new member's links are
// not refused.
func (t *Transport) SetNames(names map[protocol.NodeID]string) {
	m := maps.Clone(names)
	t.names.Store(&m)
}

func (t *Transport) memberNames() map[protocol.NodeID]string {
	if m := t.names.Load(); m != nil {
		return *m
	}
	return nil
}

// namesMember reports whether certificate c names a member, or the node is
// no member yet.
func (t *Transport) namesMember(c *x509.Certificate) bool {
	names := t.memberNames()
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if certs.HasName(c, n) {
			return true
		}
	}
	return false
}

// verifyMember is the listener's check of each handshake, after the chain
// was verified against the peer CA.
func (t *Transport) verifyMember(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || !t.namesMember(cs.PeerCertificates[0]) {
		var names []string
		if len(cs.PeerCertificates) > 0 {
			names = certs.Names(cs.PeerCertificates[0])
		}
		return fmt.Errorf("%w: it names %q", errNotMember, names)
	}
	return nil
}

// serverTLS is the peer port's listener configuration.
func (t *Transport) serverTLS() (*tls.Config, error) {
	return t.cfg.TLS.ServerConfig(certs.ServerOptions{ClientAuth: true, NextProtos: []string{"h2", peerALPN},
		Verify: t.verifyMember})
}

// clientTLS is the configuration of a dial to peer id: its certificate
// must name id's member.
func (t *Transport) clientTLS(id protocol.NodeID) (*tls.Config, error) {
	c, err := t.cfg.TLS.ClientConfig(func(leaf *x509.Certificate) error {
		name := t.memberNames()[id]
		if !certs.HasName(leaf, name) {
			return fmt.Errorf("caspaxos/transport: node %d (%q) answered with a certificate naming %q", id, name, certs.Names(leaf))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.NextProtos = []string{peerALPN}
	return c, nil
}

// grpcCredentials are a peer gRPC connection's credentials: TLS to member
// id with Config.TLS, none without.
func (t *Transport) grpcCredentials(id protocol.NodeID) (credentials.TransportCredentials, error) {
	c, err := t.clientTLS(id)
	if err != nil {
		return nil, err
	}
	c.NextProtos = nil // gRPC's own: h2
	return credentials.NewTLS(c), nil
}

// checkHello checks, on a TLS port, that conn's certificate names the
// member whose ID its hello gave.
func (t *Transport) checkHello(conn net.Conn, from protocol.NodeID) error {
	if t.cfg.TLS == nil {
		return nil
	}
	tc, ok := certs.TLSConn(conn)
	if !ok {
		return errors.New("caspaxos/transport: a peer connection without TLS on a TLS port")
	}
	cs := tc.ConnectionState()
	name := t.memberNames()[from]
	if len(cs.VerifiedChains) == 0 || !certs.HasName(cs.PeerCertificates[0], name) {
		return fmt.Errorf("%w: the hello names node %d (%q), the certificate %q", errNotMember, from, name, certs.Names(cs.PeerCertificates[0]))
	}
	return nil
}

// authorize refuses a gRPC call on the peer port whose connection has no
// verified certificate naming a member.
func (t *Transport) authorize(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "caspaxos/transport: no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return status.Error(codes.Unauthenticated, "caspaxos/transport: the peer port's services need a member's certificate")
	}
	if !t.namesMember(info.State.PeerCertificates[0]) {
		return status.Errorf(codes.PermissionDenied, "%v: it names %q", errNotMember, certs.Names(info.State.PeerCertificates[0]))
	}
	return nil
}

func (t *Transport) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := t.authorize(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (t *Transport) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := t.authorize(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// tlsServerOptions are the peer gRPC server's options for TLS: the
// listener terminates TLS (Serve), gRPC sees its state, and every call is
// authorized.
func (t *Transport) tlsServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.Creds(certs.Terminated()),
		grpc.ChainUnaryInterceptor(t.authUnary), grpc.ChainStreamInterceptor(t.authStream)}
}
