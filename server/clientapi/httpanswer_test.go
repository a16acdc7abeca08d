package clientapi

import (
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
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

func TestReadBody(t *testing.T) {
	const limit = 4
	for _, tc := range []struct {
		name    string
		body    string
		length  int64 // Content-Length; -1: unknown (chunked)
		want    string
		tooBig  bool
		failure bool
	}{
		{name: "empty", body: "", length: 0, want: ""},
		{name: "announced", body: "abc", length: 3, want: "abc"},
		{name: "at the limit", body: "abcd", length: 4, want: "abcd"},
		{name: "announced past the limit", body: "abcde", length: 5, tooBig: true},
		{name: "unknown length", body: "abc", length: -1, want: "abc"},
		{name: "unknown length past the limit", body: "abcde", length: -1, tooBig: true},
		{name: "shorter than announced", body: "ab", length: 3, failure: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/v1/kv/k", strings.NewReader(tc.body))
			r.ContentLength = tc.length
			got, err := readBody(httptest.NewRecorder(), r, limit)
			var mb *http.MaxBytesError
			switch {
			case tc.tooBig && !errors.As(err, &mb):
				t.Fatalf("got %q, %v; want a MaxBytesError", got, err)
			case tc.failure && err == nil:
				t.Fatalf("got %q and no error", got)
			case !tc.tooBig && !tc.failure && (err != nil || string(got) != tc.want || got == nil):
				t.Fatalf("got %q (nil %v), %v; want %q", got, got == nil, err, tc.want)
			}
		})
	}
}
