package clientapi

import (
	"net/http"
	"strings"
)

// IsGRPC reports whether an HTTP/2 request's content-type is gRPC's
// ("application/grpc", or with a "+format" or ";parameters" suffix, as
// the gRPC over HTTP/2 specification allows): the rule by which the
// client port hands a plain HTTP/2 connection to the gRPC server rather
// than to the HTTP API (internal/connsplit.NewH2).
func IsGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// httpProtocols are the protocols the HTTP API serves: HTTP/1.1, and
// HTTP/2 cleartext with prior knowledge (h2c: curl --http2-prior-knowledge,
// Go's http.Transport with Protocols.SetUnencryptedHTTP2), where many
// requests share one connection and the server writes their answers
// together. Over TLS the port negotiates h2 for gRPC (ALPN), so HTTP
// clients speak HTTP/1.1 there.
func httpProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}
