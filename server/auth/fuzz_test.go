package auth

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzVerifyToken: a token is what a client sends in a header, so any
// bytes may arrive. Verifying never panics; nothing but a token signed
// under the key verifies; a signed one verifies with its user and
// generation until it expires.
func FuzzVerifyToken(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	f.Add(SignToken(key, "alice", []byte{1, 2}, now.Add(time.Minute)), "alice", []byte{1, 2})
	f.Add("v1..", "", []byte(nil))
	f.Add("v1.e30.AAAA", "bob", []byte{})
	f.Add("not a token", "x", []byte{9})
	f.Fuzz(func(t *testing.T, token, user string, gen []byte) {
		if u, _, err := VerifyToken(key, token, now); err == nil {
			if !isSigned(key, token) {
				t.Fatalf("token %q verified as %q without a signature under the key", token, u)
			}
		} else if !errors.Is(err, ErrTokenInvalid) && !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("VerifyToken(%q): unclassified error %v", token, err)
		}
		if checkName("user", user) != nil {
			return // no user has such a name (AddUser refuses it)
		}
		signed := SignToken(key, user, gen, now.Add(time.Second))
		u, g, err := VerifyToken(key, signed, now)
		if err != nil || u != user || !bytes.Equal(g, gen) {
			t.Fatalf("a signed token for %q, %x: %q, %x, %v", user, gen, u, g, err)
		}
		if _, _, err := VerifyToken(key, signed, now.Add(time.Second)); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("a token past its expiry: %v, want ErrTokenExpired", err)
		}
		if _, _, err := VerifyToken([]byte("another key, as long as the first"), signed, now); !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("a token under another key: %v, want ErrTokenInvalid", err)
		}
	})
}

// isSigned reports whether token's last part is the mac of the rest under key.
func isSigned(key []byte, token string) bool {
	i := bytes.LastIndexByte([]byte(token), '.')
	if i < 0 {
		return false
	}
	sig, err := b64.DecodeString(token[i+1:])
	return err == nil && bytes.Equal(sig, mac(key, token[:i]))
}

// FuzzDecodeState: the auth state is one register's value. Decoding never
// panics, and a state that decodes encodes to bytes that decode to the
// same encoding again (nothing is lost or changed by a round trip through
// a node's cache and a compare-and-swap).
func FuzzDecodeState(f *testing.F) {
	var s State
	_ = s.AddUser("root", []byte("hash"), []byte{1})
	_ = s.AddRole("app")
	_ = s.GrantPerm("app", Grant{Perm: PermReadWrite, Key: "app/", Prefix: true})
	_ = s.GrantPerm("app", Grant{Perm: PermRead, Key: "t\xff"})
	b, _ := s.Encode()
	f.Add(b)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"users":{"a":{"roles":["x"]}}}`))
	f.Add([]byte("not json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeState(b)
		if err != nil {
			return
		}
		once, err := s.Encode()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		again, err := DecodeState(once)
		if err != nil {
			t.Fatalf("an encoded state does not decode: %v\n%s", err, once)
		}
		twice, err := again.Encode()
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("a round trip changed the state:\n%s\n%s", once, twice)
		}
	})
}

// Names that JSON would mangle are refused, so no two names become one in
// the stored state or in a token (found by FuzzVerifyToken).
func TestNamesMustBeUTF8(t *testing.T) {
	var s State
	if err := s.AddUser("\xfa", []byte("h"), []byte{1}); !errors.Is(err, ErrRefused) {
		t.Fatalf("AddUser of a name that is not UTF-8: %v, want ErrRefused", err)
	}
	if err := s.AddRole("r\xff"); !errors.Is(err, ErrRefused) {
		t.Fatalf("AddRole of a name that is not UTF-8: %v, want ErrRefused", err)
	}
	if err := s.AddUser("\uFFFD", []byte("h"), []byte{1}); err != nil {
		t.Fatalf("AddUser of U+FFFD itself, valid UTF-8: %v", err)
	}
}
