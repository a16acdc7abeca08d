package clientapi

import (
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// TestAnswerBytes holds the direct answer writers to what writeJSON (and
// Header().Set) write for the same values: same status, headers and body.
func TestAnswerBytes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fast, ref func(w http.ResponseWriter)
	}{
		{"version with etag", func(w http.ResponseWriter) { writeVersion(w, 7, true) }, func(w http.ResponseWriter) {
			w.Header().Set("ETag", etag(7))
			writeJSON(w, http.StatusOK, map[string]uint64{"version": 7})
		}},
		{"largest version", func(w http.ResponseWriter) { writeVersion(w, math.MaxUint64, false) }, func(w http.ResponseWriter) {
			writeJSON(w, http.StatusOK, map[string]uint64{"version": math.MaxUint64})
		}},
		{"increment", func(w http.ResponseWriter) { writeIncrement(w, -42, 9) }, func(w http.ResponseWriter) {
			writeJSON(w, http.StatusOK, map[string]any{"value": int64(-42), "version": uint64(9)})
		}},
		{"increment extremes", func(w http.ResponseWriter) { writeIncrement(w, math.MinInt64, math.MaxUint64) }, func(w http.ResponseWriter) {
			writeJSON(w, http.StatusOK, map[string]any{"value": int64(math.MinInt64), "version": uint64(math.MaxUint64)})
		}},
		{"value", func(w http.ResponseWriter) { writeValue(w, []byte("v\x00\xff"), 3) }, func(w http.ResponseWriter) {
			w.Header().Set("ETag", etag(3))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "3")
			_, _ = w.Write([]byte("v\x00\xff"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast, ref := httptest.NewRecorder(), httptest.NewRecorder()
			tc.fast(fast)
			tc.ref(ref)
			if fast.Code != ref.Code || fast.Body.String() != ref.Body.String() || !reflect.DeepEqual(fast.Header(), ref.Header()) {
				t.Fatalf("got %d %v %q, want %d %v %q", fast.Code, fast.Header(), fast.Body, ref.Code, ref.Header(), ref.Body)
			}
		})
	}
}
