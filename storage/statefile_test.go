package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStateFile(t *testing.T) {
	good := EncodeStateFile("MEMBERSHIP", []byte(`{"a":1}`))
	for _, tc := range []struct {
		name    string
		file    string // the name it is read under
		content []byte
		want    []byte
		err     error
	}{
		{"round trip", "MEMBERSHIP", good, []byte(`{"a":1}`), nil},
		{"empty body", "X", EncodeStateFile("X", nil), []byte{}, nil},
		{"before headers: plain JSON", "MEMBERSHIP", []byte(`{"a":1}`), []byte(`{"a":1}`), nil},
		{"a bit flipped in the body", "MEMBERSHIP", flip(good, len(good)-2), nil, ErrCorrupt},
		{"truncated", "MEMBERSHIP", good[:len(good)-1], nil, ErrCorrupt},
		{"trailing bytes", "MEMBERSHIP", append(bytes.Clone(good), 'x'), nil, ErrCorrupt},
		{"under another name", "MEMBERSHIP-CHANGE", good, nil, ErrCorrupt},
		{"no header line", "MEMBERSHIP", []byte("caspaxos-state 1 2 00000000"), nil, ErrCorrupt},
		{"another magic", "MEMBERSHIP", bytes.Replace(good, []byte("caspaxos-state"), []byte("caspaxos-stats"), 1), nil, ErrCorrupt},
		{"a newer format", "MEMBERSHIP", bytes.Replace(good, []byte("caspaxos-state 1"), []byte("caspaxos-state 2"), 1), nil, ErrFormat},
		{"empty file", "MEMBERSHIP", []byte{}, nil, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeStateFile(tc.file, tc.content)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err == nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("body %q, want %q", got, tc.want)
			}
			if err != nil && got != nil {
				t.Fatalf("a refused file's content was returned: %q", got)
			}
		})
	}
}

func TestStateFileOnDisk(t *testing.T) {
	dir := NewDir(nil, t.TempDir())
	if b, err := dir.ReadState("S"); b != nil || err != nil {
		t.Fatalf("a missing state file reads %q, %v; want nil, nil", b, err)
	}
	if err := dir.WriteState("S", []byte("body")); err != nil {
		t.Fatal(err)
	}
	if b, err := dir.ReadState("S"); string(b) != "body" || err != nil {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir.Path(), "S"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.ReadState("S"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a damaged state file: %v, want ErrCorrupt", err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// FuzzStateFile: a state file either decodes to the body it was written
// with, or is refused with ErrCorrupt or ErrFormat; never a panic, and a
// body that decodes re-encodes to a file that decodes to it again.
func FuzzStateFile(f *testing.F) {
	f.Add("MEMBERSHIP", EncodeStateFile("MEMBERSHIP", []byte(`{"membership":{}}`)))
	f.Add("PEERS", EncodeStateFile("PEERS", nil))
	f.Add("IDENTITY", []byte(`{"name":"n1"}`))
	f.Add("X", []byte("caspaxos-state 1 3 ffffffff\nabc"))
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		body, err := DecodeStateFile(name, content)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
				t.Fatalf("refused with %v, want ErrCorrupt or ErrFormat", err)
			}
			return
		}
		again, err := DecodeStateFile(name, EncodeStateFile(name, body))
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("re-encoded body %q decodes to %q, %v", body, again, err)
		}
	})
}
