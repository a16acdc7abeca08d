package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// seekBuf is an in-memory io.WriteSeeker.
type seekBuf struct {
	b   []byte
	off int
}

func (s *seekBuf) Write(p []byte) (int, error) {
	if need := s.off + len(p); need > len(s.b) {
		s.b = append(s.b, make([]byte, need-len(s.b))...)
	}
	copy(s.b[s.off:], p)
	s.off += len(p)
	return len(p), nil
}

func (s *seekBuf) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.off = int(off)
	case io.SeekEnd:
		s.off = len(s.b) + int(off)
	default:
		s.off += int(off)
	}
	return int64(s.off), nil
}

func testInfo() Info {
	return Info{Created: time.Date(2026, 12, 5, 13, 0, 0, 0, time.UTC), Source: "127.0.0.1:7070", ConfigVersion: 3,
		Members: []Member{{Name: "n1", ID: 1, PeerAddr: "127.0.0.1:7080"}, {Name: "n2", ID: 2}}}
}

func encode(t testing.TB, info Info, recs []Record) []byte {
	t.Helper()
	var sb seekBuf
	w, err := NewWriter(&sb, info)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r.Key, r.Value, r.Version); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return sb.b
}

// decode reads a whole file: its header, its records, and the error that
// ended it (nil: a clean io.EOF).
func decode(b []byte, lim Limits) (Header, []Record, error) {
	r, err := NewReader(bytes.NewReader(b), lim)
	if err != nil {
		return Header{}, nil, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header(), recs, nil
		}
		if err != nil {
			return r.Header(), recs, err
		}
		recs = append(recs, rec)
	}
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 300<<10)
	for _, tc := range []struct {
		name  string
		recs  []Record
		bound uint64
	}{
		{"empty", nil, 0},
		{"one", []Record{{Key: "a", Value: []byte("1"), Version: 7}}, 7},
		{"many", []Record{{Key: "a", Value: []byte{}, Version: 3}, {Key: "a/b", Value: []byte("x"), Version: 90}, {Key: "b", Value: big, Version: 2}}, 90},
		{"binary keys", []Record{{Key: "\x01\xff", Value: []byte{0, 1}, Version: 1}, {Key: "\xff\xfe", Value: nil, Version: 1 << 62}}, 1 << 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, testInfo(), tc.recs)
			h, recs, err := decode(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			want := Header{Format: Format, Keys: uint64(len(tc.recs)), VersionBound: tc.bound, Info: testInfo()}
			if !reflect.DeepEqual(h, want) {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			if len(recs) != len(tc.recs) {
				t.Fatalf("%d records, want %d", len(recs), len(tc.recs))
			}
			for i := range recs {
				if recs[i].Key != tc.recs[i].Key || recs[i].Version != tc.recs[i].Version || !bytes.Equal(recs[i].Value, tc.recs[i].Value) {
					t.Fatalf("record %d: %q@%d, want %q@%d", i, recs[i].Key, recs[i].Version, tc.recs[i].Key, tc.recs[i].Version)
				}
			}
		})
	}
}

// Every truncation of a file and every change of one of its bytes is
// refused: never a clean end with fewer or different records.
func TestTruncatedOrAlteredRefused(t *testing.T) {
	recs := []Record{{Key: "a", Value: []byte("one"), Version: 4}, {Key: "b", Value: []byte("two"), Version: 9}, {Key: "c", Value: nil, Version: 1}}
	b := encode(t, testInfo(), recs)
	for n := 0; n < len(b); n++ {
		_, _, err := decode(b[:n], Limits{})
		if n == 0 && errors.Is(err, ErrNotSnapshot) {
			continue
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", n, len(b), err)
		}
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			if _, _, err := decode(c, Limits{}); err == nil {
				t.Fatalf("byte %d ^ %#x: decoded cleanly", i, x)
			}
		}
	}
	if _, _, err := decode(append(bytes.Clone(b), 0), Limits{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte after the trailer: %v, want ErrCorrupt", err)
	}
}

func TestRefusals(t *testing.T) {
	good := encode(t, testInfo(), []Record{{Key: "a", Value: []byte("x"), Version: 2}})
	format2 := bytes.Clone(good)
	format2[9] = 2
	for _, tc := range []struct {
		name string
		b    []byte
		lim  Limits
		want error
		msg  string
	}{
		{"not a snapshot", []byte("PK\x03\x04 a zip file, say"), Limits{}, ErrNotSnapshot, "bad magic"},
		{"unknown format", format2, Limits{}, ErrUnknownFormat, "format version 2"},
		{"within the limits", good, Limits{MaxKeyBytes: 1, MaxValueBytes: 1}, nil, ""},
		{"value over the limit", encode(t, testInfo(), []Record{{Key: "a", Value: []byte("abc"), Version: 1}}), Limits{MaxValueBytes: 2}, ErrCorrupt, "over the limit"},
		{"key over the limit", encode(t, testInfo(), []Record{{Key: "abc", Value: nil, Version: 1}}), Limits{MaxKeyBytes: 2}, ErrCorrupt, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decode(tc.b, tc.lim)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("%v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestWriterRefusesMisuse(t *testing.T) {
	w, err := NewWriter(&seekBuf{}, testInfo())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("b", nil, 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     string
		version uint64
	}{{"a", 1}, {"b", 1}, {"", 1}, {"c", 0}} {
		if err := w.Add(tc.key, nil, tc.version); err == nil {
			t.Errorf("Add(%q, version %d) accepted", tc.key, tc.version)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("z", nil, 1); err == nil {
		t.Error("Add after Close accepted")
	}
}

// A real file: the writer's rewrite of the header lands in place.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.snap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, testInfo())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		if err := w.Add(fmt.Sprintf("k%05d", i), []byte(fmt.Sprint(i)), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, recs, err := decode(b, Limits{})
	if err != nil || h.Keys != 5000 || h.VersionBound != 5000 || len(recs) != 5000 {
		t.Fatalf("%+v, %d records, %v", h, len(recs), err)
	}
}

// FuzzReader: any input is refused or decodes to records that encode and
// decode again to the same; the reader never panics nor holds more than
// its limits (the fuzzer's small ones) per record.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, testInfo(), nil))
	f.Add(encode(f, testInfo(), []Record{{Key: "a", Value: []byte("x"), Version: 2}, {Key: "b", Value: nil, Version: 5}}))
	f.Add(encode(f, Info{}, []Record{{Key: "\xff", Value: bytes.Repeat([]byte{7}, 100), Version: 1 << 40}}))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := Limits{MaxKeyBytes: 256, MaxValueBytes: 4096}
		h, recs, err := decode(b, lim)
		if err != nil {
			if !errors.Is(err, ErrNotSnapshot) && !errors.Is(err, ErrUnknownFormat) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("an error of no class: %v", err)
			}
			return
		}
		if uint64(len(recs)) != h.Keys {
			t.Fatalf("%d records, header says %d", len(recs), h.Keys)
		}
		again := encode(t, h.Info, recs)
		h2, recs2, err := decode(again, lim)
		if err != nil {
			t.Fatalf("re-encoded file refused: %v", err)
		}
		if h2.Keys != h.Keys || h2.VersionBound != h.VersionBound || !reflect.DeepEqual(recs, recs2) {
			t.Fatalf("re-encoded file differs: %+v vs %+v", h2, h)
		}
	})
}
