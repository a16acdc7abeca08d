package auth

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Perm is what a grant allows: read, write, both, or admin.
type Perm uint8

const (
	PermRead Perm = 1 << iota
	PermWrite
	PermAdmin
	PermReadWrite = PermRead | PermWrite
)

// ParsePerm parses "read", "write", "readwrite" or "admin".
func ParsePerm(s string) (Perm, error) {
	switch strings.ToLower(s) {
	case "read":
		return PermRead, nil
	case "write":
		return PermWrite, nil
	case "readwrite":
		return PermReadWrite, nil
	case "admin":
		return PermAdmin, nil
	}
	return 0, fmt.Errorf("caspaxos/auth: unknown permission %q (read, write, readwrite or admin)", s)
}

func (p Perm) String() string {
	switch p {
	case PermRead:
		return "read"
	case PermWrite:
		return "write"
	case PermReadWrite:
		return "readwrite"
	case PermAdmin:
		return "admin"
	}
	return fmt.Sprintf("Perm(%d)", uint8(p))
}

// MarshalText encodes a Perm by its name, so that the stored state reads well.
func (p Perm) MarshalText() ([]byte, error) {
	if _, err := ParsePerm(p.String()); err != nil {
		return nil, err
	}
	return []byte(p.String()), nil
}

// UnmarshalText decodes a Perm's name.
func (p *Perm) UnmarshalText(b []byte) error {
	v, err := ParsePerm(string(b))
	*p = v
	return err
}

// Grant is one permission of a role: Perm on Key, or on every key that
// begins with Key when Prefix is set (an empty prefix covers every key).
// An admin grant has no key.
type Grant struct {
	Perm   Perm   `json:"perm"`
	Key    string `json:"key,omitempty"`
	Prefix bool   `json:"prefix,omitempty"`
}

// grantJSON is a Grant as JSON. A key is any bytes, and JSON strings hold
// only UTF-8 (encoding/json turns other bytes into U+FFFD), so a key that
// is not valid UTF-8 travels as KeyBase64 instead of Key: never mangled,
// and still readable in the common case.
type grantJSON struct {
	Perm      Perm   `json:"perm"`
	Key       string `json:"key,omitempty"`
	KeyBase64 []byte `json:"key_b64,omitempty"`
	Prefix    bool   `json:"prefix,omitempty"`
}

// MarshalJSON encodes g losslessly (grantJSON).
func (g Grant) MarshalJSON() ([]byte, error) {
	j := grantJSON{Perm: g.Perm, Key: g.Key, Prefix: g.Prefix}
	if !utf8.ValidString(g.Key) {
		j.Key, j.KeyBase64 = "", []byte(g.Key)
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (g *Grant) UnmarshalJSON(b []byte) error {
	var j grantJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Key != "" && j.KeyBase64 != nil {
		return fmt.Errorf("caspaxos/auth: a grant has both key and key_b64")
	}
	*g = Grant{Perm: j.Perm, Key: j.Key, Prefix: j.Prefix}
	if j.KeyBase64 != nil {
		g.Key = string(j.KeyBase64)
	}
	// A stored grant is one GrantPerm validated; anything else is not a
	// state this package wrote, and would not encode again.
	return g.Validate()
}

// Validate checks that g is a grant a role may hold.
func (g Grant) Validate() error {
	switch {
	case g.Perm == PermAdmin && (g.Key != "" || g.Prefix):
		return fmt.Errorf("caspaxos/auth: the admin permission takes no key or prefix")
	case g.Perm == PermAdmin:
		return nil
	case g.Perm != PermRead && g.Perm != PermWrite && g.Perm != PermReadWrite:
		return fmt.Errorf("caspaxos/auth: unknown permission %d", g.Perm)
	case g.Key == "" && !g.Prefix:
		return fmt.Errorf("caspaxos/auth: a %s grant needs a key or a prefix", g.Perm)
	}
	return nil
}

// Access is what a request needs: Perm on Key (read or write; admin needs
// no key).
type Access struct {
	Perm Perm
	Key  string
}

// Covers reports whether g allows a.
func (g Grant) Covers(a Access) bool {
	if g.Perm == PermAdmin || a.Perm == PermAdmin {
		return g.Perm == a.Perm
	}
	if g.Perm&a.Perm != a.Perm {
		return false
	}
	if g.Prefix {
		return strings.HasPrefix(a.Key, g.Key)
	}
	return a.Key == g.Key
}

func (g Grant) String() string {
	switch {
	case g.Perm == PermAdmin:
		return "admin"
	case g.Prefix:
		return fmt.Sprintf("%s prefix %q", g.Perm, g.Key)
	}
	return fmt.Sprintf("%s key %q", g.Perm, g.Key)
}
