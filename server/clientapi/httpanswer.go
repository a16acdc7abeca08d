package clientapi

import (
	"io"
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

// writeValue answers a read: the value's bytes as they are. The ETag and
// Content-Length values share one string and one slice (two allocations,
// not four).
func writeValue(w http.ResponseWriter, value []byte, version uint64) {
	var buf [48]byte
	b := append(buf[:0], '"')
	b = strconv.AppendUint(b, version, 10)
	b = append(b, '"')
	split := len(b)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	both := string(b)
	vals := []string{both[:split], both[split:]}
	h := w.Header()
	h["Etag"] = vals[0:1:1]
	h["Content-Type"] = contentTypeOctets
	h["Content-Length"] = vals[1:2:2]
	_, _ = w.Write(value)
}

// readBody reads a request's body, at most limit bytes (more: an
// *http.MaxBytesError). A body of announced length (Content-Length: what
// HTTP/1.1 clients send with a body in hand) is read into one buffer of
// that size; net/http ends the body there and reports a shorter one as
// io.ErrUnexpectedEOF. Any other grows as it comes.
func readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, int64(limit))
	if n := r.ContentLength; n >= 0 && n <= int64(limit) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}
