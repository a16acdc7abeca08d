package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// Terminated returns the gRPC server credentials of a listener whose
// connections are TLS already (a *tls.Conn, handshake done, possibly
// wrapped by a type with a NetConn method): the handshake is not done
// again, and a call's peer.FromContext(ctx).AuthInfo is a
// credentials.TLSInfo holding the connection's state (the client's
// verified certificate chains among it). A connection that is not TLS is
// refused.
func Terminated() credentials.TransportCredentials { return terminated{} }

type terminated struct{}

// errNotTLS: a connection reached a TLS-only gRPC server without TLS.
var errNotTLS = errors.New("caspaxos/certs: connection is not TLS")

// TLSConn returns the *tls.Conn under conn, unwrapping NetConn methods.
func TLSConn(conn net.Conn) (*tls.Conn, bool) {
	for conn != nil {
		if tc, ok := conn.(*tls.Conn); ok {
			return tc, true
		}
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		conn = u.NetConn()
	}
	return nil, false
}

func (terminated) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := TLSConn(conn)
	if !ok {
		return nil, nil, errNotTLS
	}
	info := credentials.TLSInfo{State: tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	return conn, info, nil
}

func (terminated) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("caspaxos/certs: Terminated credentials are for servers")
}

func (terminated) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (t terminated) Clone() credentials.TransportCredentials { return t }

func (terminated) OverrideServerName(string) error { return nil }
