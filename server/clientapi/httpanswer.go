package clientapi

import (
	"net/http"
	"strconv"
)

// The answers of the key operations, written without reflection or a map:
// byte for byte what writeJSON writes for the same values
// (encoding/json's Encoder: the object, then a newline), with the headers
// set by map assignment under their canonical names. Each shares one
// slice per header value, which net/http only reads. The HTTP test's
// TestAnswerBytes holds them to writeJSON's output.

var (
	contentTypeJSON   = []string{"application/json"}
	contentTypeOctets = []string{"application/octet-stream"}
)

// writeVersion answers a write: {"version":N}, and the ETag if etagToo.
func writeVersion(w http.ResponseWriter, version uint64, etagToo bool) {
	h := w.Header()
	if etagToo {
		h["Etag"] = []string{etag(version)}
	}
	h["Content-Type"] = contentTypeJSON
	var buf [48]byte
	b := append(buf[:0], `{"version":`...)
	b = strconv.AppendUint(b, version, 10)
	b = append(b, "}\n"...)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeIncrement answers an increment: {"value":V,"version":N}.
func writeIncrement(w http.ResponseWriter, value int64, version uint64) {
	w.Header()["Content-Type"] = contentTypeJSON
	var buf [80]byte
	b := append(buf[:0], `{"value":`...)
	b = strconv.AppendInt(b, value, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, version, 10)
	b = append(b, "}\n"...)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeValue answers a read: the value's bytes as they are.
func writeValue(w http.ResponseWriter, value []byte, version uint64) {
	h := w.Header()
	h["Etag"] = []string{etag(version)}
	h["Content-Type"] = contentTypeOctets
	h["Content-Length"] = []string{strconv.Itoa(len(value))}
	_, _ = w.Write(value)
}
