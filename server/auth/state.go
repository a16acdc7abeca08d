package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"unicode/utf8"
)

// StateKey is the register that holds the whole State (doc.go). Its
// leading 0x00 puts it in the reserved key space the client API refuses.
const StateKey = "\x00auth/state"

// RootUser always holds admin; auth can be enabled only while it exists.
const RootUser = "root"

// ErrRefused: a management request that cannot apply to the state as it
// is (the user exists already, the role is unknown, ...). Nothing changed.
var ErrRefused = errors.New("caspaxos/auth: refused")

// State is everything auth knows, stored as JSON in StateKey.
type State struct {
	Enabled bool `json:"enabled"`
	// SigningKey signs tokens (HMAC-SHA256); made when auth is enabled.
	SigningKey []byte          `json:"signing_key,omitempty"`
	Users      map[string]User `json:"users,omitempty"`
	Roles      map[string]Role `json:"roles,omitempty"`
}

// User is one account: its bcrypt password hash, its generation and its
// roles' names.
type User struct {
	PasswordHash []byte `json:"password_hash,omitempty"`
	// Generation is random, made anew when the user is added and when its
	// password changes; every token carries the generation it was made
	// under and is refused once it differs, so that a password change or
	// a delete and re-add ends the user's tokens. (Empty for a user of a
	// state written before generations, and in that user's tokens.)
	Generation []byte   `json:"generation,omitempty"`
	Roles      []string `json:"roles,omitempty"`
}

// Role is a named set of grants.
type Role struct {
	Grants []Grant `json:"grants,omitempty"`
}

// DecodeState decodes a stored state; an empty value is the state of a
// cluster that never set up auth.
func DecodeState(b []byte) (State, error) {
	var s State
	if len(b) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("caspaxos/auth: decoding the auth state: %w", err)
	}
	return s, nil
}

// Encode encodes s for StateKey.
func (s State) Encode() ([]byte, error) { return json.Marshal(s) }

// Clone returns a deep copy of s, so that a change never alters a state
// that a cache shares.
func (s State) Clone() State {
	c := State{Enabled: s.Enabled, SigningKey: slices.Clone(s.SigningKey)}
	if s.Users != nil {
		c.Users = make(map[string]User, len(s.Users))
		for n, u := range s.Users {
			c.Users[n] = User{PasswordHash: slices.Clone(u.PasswordHash), Generation: slices.Clone(u.Generation), Roles: slices.Clone(u.Roles)}
		}
	}
	if s.Roles != nil {
		c.Roles = make(map[string]Role, len(s.Roles))
		for n, r := range s.Roles {
			c.Roles[n] = Role{Grants: slices.Clone(r.Grants)}
		}
	}
	return c
}

// Allowed reports whether user may do a. The root user may do anything;
// an unknown user nothing.
func (s State) Allowed(user string, a Access) bool {
	u, ok := s.Users[user]
	if !ok {
		return false
	}
	if user == RootUser {
		return true
	}
	for _, rn := range u.Roles {
		for _, g := range s.Roles[rn].Grants {
			if g.Covers(a) {
				return true
			}
		}
	}
	return false
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// checkName refuses a name a user or role may not have: empty, longer than
// 128 bytes, or not UTF-8 (the state and the tokens are JSON, which would
// turn the other bytes into U+FFFD, so that two names would become one).
func checkName(kind, name string) error {
	if name == "" || len(name) > 128 {
		return refused("a %s name must have 1 to 128 bytes", kind)
	}
	if !utf8.ValidString(name) {
		return refused("a %s name must be UTF-8", kind)
	}
	return nil
}

// AddUser adds user name with a password hash and a fresh generation.
func (s *State) AddUser(name string, hash, generation []byte) error {
	if err := checkName("user", name); err != nil {
		return err
	}
	if _, ok := s.Users[name]; ok {
		return refused("user %q exists", name)
	}
	if s.Users == nil {
		s.Users = make(map[string]User)
	}
	s.Users[name] = User{PasswordHash: hash, Generation: generation}
	return nil
}

// DeleteUser deletes user name; root only while auth is disabled.
func (s *State) DeleteUser(name string) error {
	if _, ok := s.Users[name]; !ok {
		return refused("no user %q", name)
	}
	if name == RootUser && s.Enabled {
		return refused("the root user cannot be deleted while auth is enabled")
	}
	delete(s.Users, name)
	return nil
}

// SetPassword replaces user name's password hash and its generation,
// which ends the tokens it holds.
func (s *State) SetPassword(name string, hash, generation []byte) error {
	u, ok := s.Users[name]
	if !ok {
		return refused("no user %q", name)
	}
	u.PasswordHash, u.Generation = hash, generation
	s.Users[name] = u
	return nil
}

// GrantRole gives user the role.
func (s *State) GrantRole(user, role string) error {
	u, ok := s.Users[user]
	if !ok {
		return refused("no user %q", user)
	}
	if _, ok := s.Roles[role]; !ok {
		return refused("no role %q", role)
	}
	if !slices.Contains(u.Roles, role) {
		u.Roles = append(u.Roles, role)
		sort.Strings(u.Roles)
	}
	s.Users[user] = u
	return nil
}

// RevokeRole takes the role from user.
func (s *State) RevokeRole(user, role string) error {
	u, ok := s.Users[user]
	if !ok {
		return refused("no user %q", user)
	}
	i := slices.Index(u.Roles, role)
	if i < 0 {
		return refused("user %q has no role %q", user, role)
	}
	u.Roles = slices.Delete(u.Roles, i, i+1)
	s.Users[user] = u
	return nil
}

// AddRole adds an empty role.
func (s *State) AddRole(name string) error {
	if err := checkName("role", name); err != nil {
		return err
	}
	if _, ok := s.Roles[name]; ok {
		return refused("role %q exists", name)
	}
	if s.Roles == nil {
		s.Roles = make(map[string]Role)
	}
	s.Roles[name] = Role{}
	return nil
}

// DeleteRole deletes a role and takes it from every user, in one change.
func (s *State) DeleteRole(name string) error {
	if _, ok := s.Roles[name]; !ok {
		return refused("no role %q", name)
	}
	delete(s.Roles, name)
	for n, u := range s.Users {
		if i := slices.Index(u.Roles, name); i >= 0 {
			u.Roles = slices.Delete(u.Roles, i, i+1)
			s.Users[n] = u
		}
	}
	return nil
}

// GrantPerm adds g to role (nothing if it holds g already).
func (s *State) GrantPerm(role string, g Grant) error {
	if err := g.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	r, ok := s.Roles[role]
	if !ok {
		return refused("no role %q", role)
	}
	if !slices.Contains(r.Grants, g) {
		r.Grants = append(r.Grants, g)
	}
	s.Roles[role] = r
	return nil
}

// RevokePerm removes g, exactly as granted, from role.
func (s *State) RevokePerm(role string, g Grant) error {
	r, ok := s.Roles[role]
	if !ok {
		return refused("no role %q", role)
	}
	i := slices.Index(r.Grants, g)
	if i < 0 {
		return refused("role %q has no grant %s", role, g)
	}
	r.Grants = slices.Delete(r.Grants, i, i+1)
	s.Roles[role] = r
	return nil
}

// Enable turns auth on with signingKey; the root user must exist.
func (s *State) Enable(signingKey []byte) error {
	if _, ok := s.Users[RootUser]; !ok {
		return refused("add the user %q first: it is the one account that always holds admin", RootUser)
	}
	if s.Enabled {
		return nil
	}
	s.Enabled, s.SigningKey = true, signingKey
	return nil
}

// Disable turns auth off and drops the signing key, ending every token.
func (s *State) Disable() {
	s.Enabled, s.SigningKey = false, nil
}
