package daemon

import (
	"crypto/tls"
	"net"
	"net/http"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/consulapi"
)

// serveConsul serves Consul's KV HTTP API on cfg.ConsulAddr, if set
// (server/consulapi): the client port's TLS (with its client-certificate
// rule), HTTP timeouts, admission bound, authorization and watches. It
// returns the server, nil when off.
func (d *Daemon) serveConsul() (*http.Server, net.Listener, error) {
	if d.cfg.ConsulAddr == "" {
		return nil, nil, nil
	}
	lis, err := net.Listen("tcp", d.cfg.ConsulAddr)
	if err != nil {
		return nil, nil, &ConfigError{Problems: []Problem{problem("%s: %v", Field("ConsulAddr"), err)}}
	}
	srv := clientapi.NewHTTPServer(consulapi.New(consulapi.Config{Limits: d.cfg.Limits, RequestTimeout: d.cfg.RequestTimeout,
		Admission: d.admission, Guard: d.authz, Watches: d, Addr: lis.Addr().String(), NodeName: d.cfg.Name,
		Version: consulapi.APIVersion, AllowedHosts: allowedHosts(d.cfg.HTTPAllowedHosts, d.cfg.ConsulAddr, d.cfg.PeerAddr)}, d),
		d.cfg.HTTP, d.log)
	served := d.admission.Listener(lis)
	if d.tls.client != nil {
		cfg, err := d.tls.client.ServerConfig(certs.ServerOptions{ClientAuth: d.cfg.TLS.ClientCertAuth, NextProtos: []string{"http/1.1"}})
		if err != nil {
			lis.Close()
			return nil, nil, err
		}
		served = tls.NewListener(served, cfg)
	}
	go func() { _ = srv.Serve(served) }()
	return srv, lis, nil
}

// ConsulAddr is the address Consul's API listens on ("" when off).
func (d *Daemon) ConsulAddr() string {
	if d.consulLis == nil {
		return ""
	}
	return d.consulLis.Addr().String()
}
