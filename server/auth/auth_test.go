package auth

import (
	"errors"
	"testing"
	"time"
)

func TestGrantCovers(t *testing.T) {
	tests := []struct {
		name string
		g    Grant
		a    Access
		want bool
	}{
		{"read key", Grant{Perm: PermRead, Key: "a"}, Access{PermRead, "a"}, true},
		{"read key is not write", Grant{Perm: PermRead, Key: "a"}, Access{PermWrite, "a"}, false},
		{"write key is not read", Grant{Perm: PermWrite, Key: "a"}, Access{PermRead, "a"}, false},
		{"readwrite reads", Grant{Perm: PermReadWrite, Key: "a"}, Access{PermRead, "a"}, true},
		{"readwrite writes", Grant{Perm: PermReadWrite, Key: "a"}, Access{PermWrite, "a"}, true},
		{"key is not its prefix", Grant{Perm: PermRead, Key: "a"}, Access{PermRead, "ab"}, false},
		{"prefix covers below", Grant{Perm: PermRead, Key: "app/", Prefix: true}, Access{PermRead, "app/x"}, true},
		{"prefix covers itself", Grant{Perm: PermRead, Key: "app/", Prefix: true}, Access{PermRead, "app/"}, true},
		{"prefix next to the granted", Grant{Perm: PermRead, Key: "app/", Prefix: true}, Access{PermRead, "app0"}, false},
		{"prefix shorter key", Grant{Perm: PermRead, Key: "app/", Prefix: true}, Access{PermRead, "app"}, false},
		{"empty prefix covers all", Grant{Perm: PermWrite, Prefix: true}, Access{PermWrite, "z"}, true},
		{"admin covers admin", Grant{Perm: PermAdmin}, Access{Perm: PermAdmin}, true},
		{"admin is not read", Grant{Perm: PermAdmin}, Access{PermRead, "a"}, false},
		{"readwrite all is not admin", Grant{Perm: PermReadWrite, Prefix: true}, Access{Perm: PermAdmin}, false},
	}
	for _, tt := range tests {
		if got := tt.g.Covers(tt.a); got != tt.want {
			t.Errorf("%s: %v covers %+v = %v, want %v", tt.name, tt.g, tt.a, got, tt.want)
		}
	}
}

func TestGrantValidate(t *testing.T) {
	tests := []struct {
		g  Grant
		ok bool
	}{
		{Grant{Perm: PermRead, Key: "a"}, true},
		{Grant{Perm: PermReadWrite, Prefix: true}, true},
		{Grant{Perm: PermRead}, false},
		{Grant{Perm: PermAdmin}, true},
		{Grant{Perm: PermAdmin, Key: "a"}, false},
		{Grant{Perm: 0, Key: "a"}, false},
	}
	for _, tt := range tests {
		if err := tt.g.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: Validate() = %v, want ok %v", tt.g, err, tt.ok)
		}
	}
}

func TestPermText(t *testing.T) {
	for _, p := range []Perm{PermRead, PermWrite, PermReadWrite, PermAdmin} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q Perm
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v: round trip gave %v, %v", p, q, err)
		}
	}
	if _, err := Perm(0).MarshalText(); err == nil {
		t.Error("Perm(0) encoded")
	}
	if _, err := ParsePerm("execute"); err == nil {
		t.Error("ParsePerm(execute) accepted")
	}
}

func testState(t *testing.T) State {
	t.Helper()
	var s State
	for _, step := range []error{
		s.AddUser(RootUser, []byte("h"), nil),
		s.AddUser("alice", []byte("h"), nil),
		s.AddUser("bob", []byte("h"), nil),
		s.AddRole("app"),
		s.AddRole("ops"),
		s.GrantPerm("app", Grant{Perm: PermReadWrite, Key: "app/", Prefix: true}),
		s.GrantPerm("app", Grant{Perm: PermRead, Key: "config"}),
		s.GrantPerm("ops", Grant{Perm: PermAdmin}),
		s.GrantRole("alice", "app"),
		s.GrantRole("bob", "ops"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	return s
}

func TestStateAllowed(t *testing.T) {
	s := testState(t)
	tests := []struct {
		user string
		a    Access
		want bool
	}{
		{RootUser, Access{Perm: PermAdmin}, true},
		{RootUser, Access{PermWrite, "anything"}, true},
		{"alice", Access{PermWrite, "app/x"}, true},
		{"alice", Access{PermRead, "config"}, true},
		{"alice", Access{PermWrite, "config"}, false},
		{"alice", Access{PermRead, "app0"}, false},
		{"alice", Access{Perm: PermAdmin}, false},
		{"bob", Access{Perm: PermAdmin}, true},
		{"bob", Access{PermRead, "app/x"}, false},
		{"mallory", Access{PermRead, "app/x"}, false},
	}
	for _, tt := range tests {
		if got := s.Allowed(tt.user, tt.a); got != tt.want {
			t.Errorf("%s %+v: Allowed = %v, want %v", tt.user, tt.a, got, tt.want)
		}
	}
}

func TestStateChanges(t *testing.T) {
	s := testState(t)
	if err := s.DeleteRole("app"); err != nil {
		t.Fatal(err)
	}
	if s.Allowed("alice", Access{PermWrite, "app/x"}) || len(s.Users["alice"].Roles) != 0 {
		t.Errorf("deleting a role left it with its user: %+v", s.Users["alice"])
	}
	for name, err := range map[string]error{
		"user twice":        s.AddUser("alice", nil, nil),
		"role twice":        s.AddRole("ops"),
		"unknown role":      s.GrantRole("alice", "nope"),
		"unknown user":      s.GrantRole("nope", "ops"),
		"revoke not held":   s.RevokeRole("alice", "ops"),
		"revoke not grant":  s.RevokePerm("ops", Grant{Perm: PermRead, Key: "a"}),
		"bad grant":         s.GrantPerm("ops", Grant{Perm: PermRead}),
		"empty name":        s.AddUser("", nil, nil),
		"delete no user":    s.DeleteUser("nope"),
		"password for none": s.SetPassword("nope", nil, nil),
	} {
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", name, err)
		}
	}
	var empty State
	if err := empty.Enable([]byte("k")); !errors.Is(err, ErrRefused) || empty.Enabled {
		t.Errorf("enable without root: %v (enabled %v)", err, empty.Enabled)
	}
	if err := s.Enable([]byte("k")); err != nil || !s.Enabled {
		t.Fatalf("enable: %v", err)
	}
	if err := s.DeleteUser(RootUser); !errors.Is(err, ErrRefused) {
		t.Errorf("deleting root while enabled: %v", err)
	}
	s.Disable()
	if s.Enabled || s.SigningKey != nil {
		t.Error("Disable left auth on")
	}
	if err := s.DeleteUser(RootUser); err != nil {
		t.Errorf("deleting root while disabled: %v", err)
	}
}

func TestStateEncoding(t *testing.T) {
	s := testState(t)
	if err := s.Enable([]byte("key")); err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Allowed("alice", Access{PermWrite, "app/1"}) || got.Allowed("alice", Access{PermWrite, "config"}) || !got.Enabled {
		t.Errorf("decoded state differs: %s", b)
	}
	c := got.Clone()
	c.Users["alice"].Roles[0] = "ops"
	if got.Users["alice"].Roles[0] != "app" {
		t.Error("Clone shares a user's roles")
	}
	if _, err := DecodeState([]byte(`{"roles":{"x":{"grants":[{"perm":"sudo"}]}}}`)); err == nil {
		t.Error("decoded an unknown permission")
	}
	if z, err := DecodeState(nil); err != nil || z.Enabled {
		t.Errorf("empty value: %+v, %v", z, err)
	}
}

func TestToken(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1000, 0)
	gen := []byte("generation 1")
	tok := SignToken(key, "alice", gen, now.Add(time.Minute))
	tests := []struct {
		name  string
		key   []byte
		token string
		now   time.Time
		want  error
	}{
		{"valid", key, tok, now, nil},
		{"expired at expiry", key, tok, now.Add(time.Minute), ErrTokenExpired},
		{"other key", []byte("another key"), tok, now, ErrTokenInvalid},
		{"no key", nil, tok, now, ErrTokenInvalid},
		{"tampered payload", key, "v1." + b64.EncodeToString([]byte(`{"u":"root","exp":9e18}`)) + tok[len(tok)-44:], now, ErrTokenInvalid},
		{"garbage", key, "hello", now, ErrTokenInvalid},
		{"no version", key, tok[3:], now, ErrTokenInvalid},
	}
	for _, tt := range tests {
		user, g, err := VerifyToken(tt.key, tt.token, tt.now)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (user == "alice" && string(g) == string(gen)) {
			t.Errorf("%s: (%q, %q, %v), want error %v", tt.name, user, g, err, tt.want)
		}
	}
}
