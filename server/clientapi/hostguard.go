package clientapi

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/caspaxos/caspaxos/kv"
)

// The DNS rebinding guard. A web page of evil.example whose name is made
// to resolve to 127.0.0.1 once the page is loaded reaches a client port on
// localhost as its own origin: its requests carry "Host: evil.example:7070"
// and a matching Origin, so the CSRF rule (checkOrigin) takes them as
// same-origin, and they may read too (GETs). The Host header tells them
// apart: a browser that asks a node on purpose names it by an IP address,
// by localhost (or a name under .localhost, which browsers resolve to
// loopback themselves, never through DNS), or by a name its operator
// allowed (HTTPConfig.AllowedHosts).
//
// The rule applies to what a browser sends (an Origin or a Sec-Fetch-*
// header: curl, the Go client and the CLI send neither) over plain HTTP;
// over TLS a rebinding page fails the certificate check, since the node's
// certificate does not name the attacker's host.

// AllowAnyHost in HTTPConfig.AllowedHosts turns the guard off.
const AllowAnyHost = "*"

// fromBrowser reports whether r carries a header only browsers send.
func fromBrowser(r *http.Request) bool {
	if _, ok := r.Header["Origin"]; ok {
		return true
	}
	for name := range r.Header {
		// net/http canonicalizes names: Sec-Fetch-Site, Sec-Fetch-Mode, ...
		if strings.HasPrefix(name, "Sec-Fetch-") {
			return true
		}
	}
	return false
}

// hostName is the host part of a Host header: without its port and an
// IPv6 literal's brackets, lower case, without a trailing dot.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// checkHost is the DNS rebinding guard's rule (above): nil if r may be
// served, else a permission_denied error naming the host.
func checkHost(r *http.Request, allowed []string) error {
	if r.TLS != nil || !fromBrowser(r) {
		return nil
	}
	host := hostName(r.Host)
	if host != "" {
		if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return nil
		}
		for _, a := range allowed {
			if a == AllowAnyHost || strings.EqualFold(hostName(a), host) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: host %q is not allowed for browser requests (DNS rebinding guard): add it with --http-allowed-hosts",
		kv.ErrPermissionDenied, host)
}

// CheckBrowser is what a front end on another HTTP port (Consul's API)
// asks of every request before serving it, as the client port does: the
// DNS rebinding guard (checkHost, with that port's allowed host names) and
// the CSRF rule for a request that is not an admin one (checkOrigin).
func CheckBrowser(r *http.Request, allowedHosts []string) error {
	if err := checkHost(r, allowedHosts); err != nil {
		return err
	}
	return checkOrigin(r, false)
}
