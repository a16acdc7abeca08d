package daemon

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/etcdapi"
)

// serveEtcd serves etcd's v3 API on cfg.EtcdAddr, if set (server/etcdapi):
// the client port's TLS (with its client-certificate rule), admission
// bound and authorization. It returns the server, nil when off.
func (d *Daemon) serveEtcd() (*grpc.Server, net.Listener, error) {
	if d.cfg.EtcdAddr == "" {
		return nil, nil, nil
	}
	lis, err := net.Listen("tcp", d.cfg.EtcdAddr)
	if err != nil {
		return nil, nil, &ConfigError{Problems: []Problem{problem("%s: %v", Field("EtcdAddr"), err)}}
	}
	opts := append(clientapi.KeepaliveOptions(), etcdapi.ServerOptions()...)
	// A TLS handshake is cut off as the client port's is (SniffTimeout),
	// not at gRPC's default of 120 s.
	opts = append(opts, d.grpcRecvLimit(), grpc.ConnectionTimeout(d.cfg.Timers.SniffTimeout))
	scheme := "http"
	if d.tls.client != nil {
		cfg, err := d.tls.client.ServerConfig(certs.ServerOptions{ClientAuth: d.cfg.TLS.ClientCertAuth, NextProtos: []string{"h2"}})
		if err != nil {
			lis.Close()
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
		scheme = "https"
	}
	srv := grpc.NewServer(opts...)
	etcdapi.New(etcdapi.Config{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout, Admission: d.admission,
		Guard: d.authz, MemberID: uint64(d.id), EtcdURL: fmt.Sprintf("%s://%s", scheme, lis.Addr()),
		Version: etcdapi.APIVersion, Watches: d}, d).Register(srv)
	go func() { _ = srv.Serve(d.admission.Listener(lis)) }()
	return srv, lis, nil
}

// EtcdAddr is the address etcd's API listens on ("" when off).
func (d *Daemon) EtcdAddr() string {
	if d.etcdLis == nil {
		return ""
	}
	return d.etcdLis.Addr().String()
}

// stopGRPC stops s gracefully, or at once when ctx ends first.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	graceful := make(chan struct{})
	go func() { s.GracefulStop(); close(graceful) }()
	select {
	case <-graceful:
	case <-ctx.Done():
		s.Stop()
	}
}
