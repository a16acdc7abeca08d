package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Registers runs operations on the cluster's registers; a node (through
// the daemon) implements it. Unlike the client API it lets the reserved keys
// through: that is how auth reaches StateKey.
type Registers interface {
	Do(ctx context.Context, op kv.Op) (protocol.State, error)
	// Local returns the state of key that this node's own acceptor last
	// accepted (possibly never chosen; zero if it holds none), read
	// without any round trip. A node that reaches no quorum and has never
	// read the auth state looks at it only to refuse more, never to allow
	// more (Guard.unknown).
	Local(key string) (protocol.State, error)
	// Seen returns what SetSeen last kept on this node's own disk; ok is
	// false if it never kept anything.
	Seen() (s Seen, ok bool, err error)
	// SetSeen keeps s durably on this node's own disk: once it returns,
	// a restart's Seen answers s.
	SetSeen(s Seen) error
}

// Seen is what a quorum read of the auth state said, as a node keeps it on
// its own disk: whether auth was enabled, at which version of the register.
// It lets a node that restarts amid a partition, and so cannot read the
// state, tell "auth is disabled" (then releasing held nodes stays open)
// from "auth is enabled, or I never knew" (then it refuses everything that
// needs authorization until a quorum read succeeds).
type Seen struct {
	Enabled bool   `json:"enabled"`
	Version uint64 `json:"version"`
}

// ErrStateUnknown: this node has not read the auth state from a quorum
// since it started, and nothing it holds shows that auth is disabled; it
// refuses every request that needs authorization until a read succeeds.
// It comes wrapped with kv.ErrNoQuorum (code no_quorum: HTTP 503, gRPC
// Unavailable), as the refusal is the missing quorum's.
var ErrStateUnknown = errors.New("caspaxos/auth: the auth state is unknown on this node")

// Config configures a Guard. A zero field takes DefaultConfig's.
type Config struct {
	// TokenTTL is how long a token lives (default 5m).
	TokenTTL time.Duration
	// Staleness bounds the age of the cached state a request is checked
	// against (default 5s): a change made on another node takes effect
	// here within it (doc.go).
	Staleness time.Duration
	// BcryptCost is the cost of password hashes (default bcrypt's, 10).
	BcryptCost int
	// MaxConcurrentLogins bounds the logins (and own password changes)
	// checked at once (default 4): each costs a bcrypt comparison, tens of
	// milliseconds of CPU by design, so that unbounded ones would let
	// anyone who reaches the client port starve the node. One past the
	// bound is refused at once as kv.ErrOverloaded.
	MaxConcurrentLogins int
	// Now is the clock (nil: time.Now); tests step it.
	Now func() time.Time
}

// DefaultConfig returns Config's defaults.
func DefaultConfig() Config {
	return Config{TokenTTL: 5 * time.Minute, Staleness: 5 * time.Second, BcryptCost: bcrypt.DefaultCost, MaxConcurrentLogins: 4}
}

// maxChangeAttempts bounds the compare-and-swap retries of one change: each
// retry means another node changed the state in between.
const maxChangeAttempts = 16

// signingKeyBytes is the size of the HMAC key (SHA-256's block is 64).
const signingKeyBytes = 32

// generationBytes is the size of a user's generation (User.Generation):
// random, so that a deleted and re-added user never gets its old one back.
const generationBytes = 16

// Guard authenticates and authorizes client requests against the auth
// state, and changes that state. It is safe for concurrent use.
type Guard struct {
	cfg  Config
	regs Registers

	refresh sync.Mutex // one read of the register at a time
	mu      sync.Mutex
	state   State
	read    bool   // state holds what was read at some point
	version uint64 // the register's version state was read at
	fetched time.Time

	seenMu sync.Mutex // one SetSeen at a time
	seen   Seen       // what SetSeen last kept (seenOK)
	seenOK bool

	logins chan struct{} // a semaphore of MaxConcurrentLogins

	dummyOnce sync.Once
	dummy     []byte
}

// admitLogin takes a place among the MaxConcurrentLogins, or refuses at
// once; the caller calls the returned func when its bcrypt work is done.
func (g *Guard) admitLogin() (func(), error) {
	select {
	case g.logins <- struct{}{}:
		return func() { <-g.logins }, nil
	default:
		return nil, fmt.Errorf("%w: %d password checks in progress on this node; try again shortly", kv.ErrOverloaded, cap(g.logins))
	}
}

// New returns a Guard over regs.
func New(cfg Config, regs Registers) (*Guard, error) {
	def := DefaultConfig()
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = def.TokenTTL
	}
	if cfg.Staleness <= 0 {
		cfg.Staleness = def.Staleness
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = def.BcryptCost
	}
	if cfg.MaxConcurrentLogins <= 0 {
		cfg.MaxConcurrentLogins = def.MaxConcurrentLogins
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("caspaxos/auth: BcryptCost %d outside [%d, %d]", cfg.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if regs == nil {
		return nil, errors.New("caspaxos/auth: no Registers")
	}
	return &Guard{cfg: cfg, regs: regs, logins: make(chan struct{}, cfg.MaxConcurrentLogins)}, nil
}

// TokenTTL is the life of the tokens this Guard signs.
func (g *Guard) TokenTTL() time.Duration { return g.cfg.TokenTTL }

// current returns the state to check against: the cache if younger than
// Staleness, else a fresh read; if the read fails, the last state read
// (its requests need the quorum that failed), or if none was, the
// disabled state only if this node's disk says that the last quorum read
// found auth disabled (unknown).
func (g *Guard) current(ctx context.Context) (State, error) {
	if s, ok := g.cached(); ok {
		return s, nil
	}
	g.refresh.Lock()
	defer g.refresh.Unlock()
	if s, ok := g.cached(); ok {
		return s, nil // another request refreshed it meanwhile
	}
	start := g.cfg.Now()
	s, version, err := g.load(ctx)
	if err == nil {
		return g.install(s, version, start)
	}
	g.mu.Lock()
	s, read := g.state, g.read
	g.mu.Unlock()
	if read {
		return s, nil
	}
	// Nothing cached: the next request tries the cluster again.
	return g.unknown(err)
}

// install caches s, read from a quorum at version by a read that began at
// start, keeps on disk what it says (remember), and returns the cached
// state. The cache never goes back to an older version: a read that began
// before a change made here, and ended after it, must not bring back what
// the change removed (a revoke). Its age counts from the read's start, the
// latest moment the state it read is known to have held.
func (g *Guard) install(s State, version uint64, start time.Time) (State, error) {
	g.mu.Lock()
	switch {
	case !g.read || version > g.version:
		g.state, g.read, g.version, g.fetched = s, true, version, start
	case version == g.version && start.After(g.fetched):
		g.fetched = start
	}
	s, seen := g.state, Seen{Enabled: g.state.Enabled, Version: g.version}
	g.mu.Unlock()
	return s, g.remember(seen)
}

// remember keeps seen on disk when it differs from what was kept last,
// never going back to an older version. A failed write fails the request:
// a node must not go on with a disk that may say "disabled" while auth is
// enabled.
func (g *Guard) remember(seen Seen) error {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	if g.seenOK && (g.seen == seen || seen.Version < g.seen.Version) {
		return nil
	}
	if err := g.regs.SetSeen(seen); err != nil {
		return fmt.Errorf("caspaxos/auth: keeping what the auth state says on this node's disk: %w", err)
	}
	g.seen, g.seenOK = seen, true
	return nil
}

// unknown answers for a node that failed to read the state (readErr) and
// has read none since it started. A missing or local copy never counts as
// "disabled": only a quorum read does, as kept on disk by remember. So the
// node treats auth as disabled only if the last quorum read it kept found
// it disabled and its own acceptor holds no newer enabled state; otherwise
// ErrStateUnknown.
func (g *Guard) unknown(readErr error) (State, error) {
	seen, ok, err := g.regs.Seen()
	var why string
	switch {
	case err != nil:
		why = fmt.Sprintf("its record of the last read is unreadable: %v", err)
	case !ok:
		why = "it never read it"
	case seen.Enabled:
		why = fmt.Sprintf("auth was enabled at its last read (version %d)", seen.Version)
	default:
		local, lerr := g.regs.Local(StateKey)
		var s State
		if lerr == nil {
			s, lerr = DecodeState(local.Value)
		}
		switch {
		case lerr != nil:
			why = fmt.Sprintf("its own acceptor's copy is unreadable: %v", lerr)
		case s.Enabled:
			why = fmt.Sprintf("its own acceptor holds an enabled state (version %d) newer than its last read", kv.CurrentVersion(local))
		default:
			return State{}, nil // auth was disabled at the last quorum read
		}
	}
	return State{}, fmt.Errorf("%w: no quorum read of it since this node started (%v), and %s; requests that need authorization are refused until one succeeds: %w",
		ErrStateUnknown, readErr, why, kv.ErrNoQuorum)
}

func (g *Guard) cached() (State, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state, g.read && g.cfg.Now().Sub(g.fetched) < g.cfg.Staleness
}

// load reads StateKey and returns the state and the register's version
// (0: absent).
func (g *Guard) load(ctx context.Context) (State, uint64, error) {
	reg, err := g.regs.Do(ctx, kv.Op{Kind: kv.OpGet, Key: StateKey})
	if err != nil {
		return State{}, 0, err
	}
	s, err := DecodeState(reg.Value)
	return s, kv.CurrentVersion(reg), err
}

// change applies fn to the stored state with compare-and-swap, retrying
// when another node changed it in between, and caches the result.
func (g *Guard) change(ctx context.Context, fn func(*State) error) error {
	for range maxChangeAttempts {
		s, version, err := g.load(ctx)
		if err != nil {
			return err
		}
		s = s.Clone()
		if err := fn(&s); err != nil {
			return err
		}
		b, err := s.Encode()
		if err != nil {
			return err
		}
		start := g.cfg.Now()
		reg, err := g.regs.Do(ctx, kv.Op{Kind: kv.OpCompareAndSwap, Key: StateKey, Version: version, Value: b})
		if errors.Is(err, kv.ErrVersionMismatch) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = g.install(s, kv.CurrentVersion(reg), start)
		return err
	}
	return fmt.Errorf("caspaxos/auth: the auth state changed %d times during one change; try again: %w", maxChangeAttempts, kv.ErrNoQuorum)
}

// Credentials are what a request carries: a bearer token, and the common
// names of the client certificates the transport verified.
type Credentials struct {
	Token       string
	CommonNames []string
}

// Principal is who a request acts as. Open: auth is disabled, and the
// request may do anything.
type Principal struct {
	User string
	Open bool
}

// LastEnabled reports, without any I/O but the node's own disk, whether
// auth was enabled at the last quorum read: the cached state's, or before
// any read since the start, the one kept on disk (false if none). For
// warnings, never for a decision.
func (g *Guard) LastEnabled() bool {
	g.mu.Lock()
	on, read := g.state.Enabled, g.read
	g.mu.Unlock()
	if read {
		return on
	}
	seen, ok, err := g.regs.Seen()
	return err == nil && ok && seen.Enabled
}

// Enabled reports whether auth is on (by the cached state).
func (g *Guard) Enabled(ctx context.Context) (bool, error) {
	s, err := g.current(ctx)
	return s.Enabled, err
}

// Authenticate finds who c is. With auth disabled everyone is an open
// principal; with it enabled, a valid token's user, else the user a
// verified certificate names, else kv.ErrUnauthenticated.
func (g *Guard) Authenticate(ctx context.Context, c Credentials) (Principal, error) {
	s, err := g.current(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !s.Enabled {
		return Principal{Open: true}, nil
	}
	if c.Token != "" {
		user, gen, err := VerifyToken(s.SigningKey, c.Token, g.cfg.Now())
		if err != nil {
			return Principal{}, fmt.Errorf("%w: %w", kv.ErrUnauthenticated, err)
		}
		u, ok := s.Users[user]
		if !ok {
			return Principal{}, fmt.Errorf("%w: user %q no longer exists", kv.ErrUnauthenticated, user)
		}
		if subtle.ConstantTimeCompare(gen, u.Generation) != 1 {
			return Principal{}, fmt.Errorf("%w: the token of user %q predates a change of its password (or its deletion); log in again", kv.ErrUnauthenticated, user)
		}
		return Principal{User: user}, nil
	}
	for _, cn := range c.CommonNames {
		if _, ok := s.Users[cn]; ok && cn != "" {
			return Principal{User: cn}, nil
		}
	}
	if len(c.CommonNames) > 0 {
		return Principal{}, fmt.Errorf("%w: no user named by the client certificate (CN %q)", kv.ErrUnauthenticated, c.CommonNames[0])
	}
	return Principal{}, fmt.Errorf("%w: auth is enabled: log in and send the token (Authorization: Bearer), or a client certificate", kv.ErrUnauthenticated)
}

// Authorize checks that p may do a, by the current state (within
// Staleness): kv.ErrPermissionDenied if not.
//
// An open principal (authenticated while auth was disabled: a Batch
// stream opened before `auth enable`) is refused as unauthenticated once
// auth is enabled, so that no stream keeps the access it had before.
func (g *Guard) Authorize(ctx context.Context, p Principal, a Access) error {
	s, err := g.current(ctx)
	if err != nil {
		return err
	}
	if !s.Enabled || (!p.Open && s.Allowed(p.User, a)) {
		return nil
	}
	if p.Open {
		return fmt.Errorf("%w: auth was enabled after this stream opened; open it again with credentials", kv.ErrUnauthenticated)
	}
	if _, ok := s.Users[p.User]; !ok {
		return fmt.Errorf("%w: user %q no longer exists", kv.ErrUnauthenticated, p.User)
	}
	if a.Perm == PermAdmin {
		return fmt.Errorf("%w: user %q lacks the admin permission", kv.ErrPermissionDenied, p.User)
	}
	return fmt.Errorf("%w: user %q lacks %s on key %q", kv.ErrPermissionDenied, p.User, a.Perm, a.Key)
}

// dummyHash is compared against when the user is unknown, so that a login
// takes as long whether the user exists or not; made at the first need.
func (g *Guard) dummyHash() []byte {
	g.dummyOnce.Do(func() {
		g.dummy, _ = bcrypt.GenerateFromPassword([]byte("no such user"), g.cfg.BcryptCost)
	})
	return g.dummy
}

// Login checks user's password and returns a token and its expiry. A wrong
// user or password is kv.ErrUnauthenticated, the same for both. Login works
// only while auth is enabled: before, there is no signing key.
//
// Login checks against a fresh linearizable read of the state, never the
// cache nor this node's own copy: a token made here is taken by every node,
// so a node cut off from the quorum must not mint one from a password
// changed since (it answers kv.ErrNoQuorum instead).
func (g *Guard) Login(ctx context.Context, user, password string) (string, time.Time, error) {
	done, err := g.admitLogin()
	if err != nil {
		return "", time.Time{}, err
	}
	defer done()
	start := g.cfg.Now()
	s, version, err := g.load(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("caspaxos/auth: login needs a quorum read of the auth state: %w", err)
	}
	if _, err := g.install(s, version, start); err != nil {
		return "", time.Time{}, err
	}
	if !s.Enabled {
		return "", time.Time{}, fmt.Errorf("%w: auth is not enabled (caspaxos auth enable)", ErrRefused)
	}
	if !g.passwordMatches(s, user, password) {
		return "", time.Time{}, fmt.Errorf("%w: wrong user name or password", kv.ErrUnauthenticated)
	}
	exp := g.cfg.Now().Add(g.cfg.TokenTTL)
	return SignToken(s.SigningKey, user, s.Users[user].Generation, exp), exp, nil
}

// passwordMatches reports whether user exists in s with password, taking
// as long when it does not exist.
func (g *Guard) passwordMatches(s State, user, password string) bool {
	u, ok := s.Users[user]
	hash := u.PasswordHash
	if !ok {
		hash = g.dummyHash()
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && ok
}

func generation() ([]byte, error) {
	gen := make([]byte, generationBytes)
	_, err := rand.Read(gen)
	return gen, err
}

func (g *Guard) hash(password string) ([]byte, error) {
	if password == "" {
		return nil, fmt.Errorf("%w: empty password", ErrRefused)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), g.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err) // longer than bcrypt's 72 bytes
	}
	return h, nil
}

// AddUser adds a user with a password, under a fresh generation: no token
// of a user of that name deleted before works for this one.
func (g *Guard) AddUser(ctx context.Context, name, password string) error {
	h, err := g.hash(password)
	if err != nil {
		return err
	}
	gen, err := generation()
	if err != nil {
		return err
	}
	return g.change(ctx, func(s *State) error { return s.AddUser(name, h, gen) })
}

// DeleteUser deletes a user.
func (g *Guard) DeleteUser(ctx context.Context, name string) error {
	return g.change(ctx, func(s *State) error { return s.DeleteUser(name) })
}

// SetPassword changes a user's password (an admin's request) and ends
// every token the user holds.
func (g *Guard) SetPassword(ctx context.Context, name, password string) error {
	return g.setPassword(ctx, name, password, nil)
}

// ChangeOwnPassword changes a user's password at its own request: only if
// current is its password in the state the change replaces, so that a
// stolen token alone cannot take the account over. A wrong current
// password is kv.ErrPermissionDenied. Every token the user holds ends,
// the one of the request among them.
func (g *Guard) ChangeOwnPassword(ctx context.Context, name, current, password string) error {
	done, err := g.admitLogin()
	if err != nil {
		return err
	}
	defer done()
	return g.setPassword(ctx, name, password, func(s *State) error {
		if !g.passwordMatches(*s, name, current) {
			return fmt.Errorf("%w: the current password of user %q is wrong (send it to change one's own password)", kv.ErrPermissionDenied, name)
		}
		return nil
	})
}

// setPassword replaces name's password hash and generation, after check
// (if set) accepted the state it replaces.
func (g *Guard) setPassword(ctx context.Context, name, password string, check func(*State) error) error {
	h, err := g.hash(password)
	if err != nil {
		return err
	}
	gen, err := generation()
	if err != nil {
		return err
	}
	return g.change(ctx, func(s *State) error {
		if check != nil {
			if err := check(s); err != nil {
				return err
			}
		}
		return s.SetPassword(name, h, gen)
	})
}

// GrantRole gives a user a role.
func (g *Guard) GrantRole(ctx context.Context, user, role string) error {
	return g.change(ctx, func(s *State) error { return s.GrantRole(user, role) })
}

// RevokeRole takes a role from a user.
func (g *Guard) RevokeRole(ctx context.Context, user, role string) error {
	return g.change(ctx, func(s *State) error { return s.RevokeRole(user, role) })
}

// AddRole adds an empty role.
func (g *Guard) AddRole(ctx context.Context, name string) error {
	return g.change(ctx, func(s *State) error { return s.AddRole(name) })
}

// DeleteRole deletes a role and takes it from every user.
func (g *Guard) DeleteRole(ctx context.Context, name string) error {
	return g.change(ctx, func(s *State) error { return s.DeleteRole(name) })
}

// GrantPerm adds a grant to a role.
func (g *Guard) GrantPerm(ctx context.Context, role string, gr Grant) error {
	return g.change(ctx, func(s *State) error { return s.GrantPerm(role, gr) })
}

// RevokePerm removes a grant from a role.
func (g *Guard) RevokePerm(ctx context.Context, role string, gr Grant) error {
	return g.change(ctx, func(s *State) error { return s.RevokePerm(role, gr) })
}

// Enable turns auth on, with a fresh signing key; the root user must exist.
func (g *Guard) Enable(ctx context.Context) error {
	key := make([]byte, signingKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return g.change(ctx, func(s *State) error { return s.Enable(key) })
}

// Disable turns auth off; every token ends with the signing key.
func (g *Guard) Disable(ctx context.Context) error {
	return g.change(ctx, func(s *State) error { s.Disable(); return nil })
}

// UserInfo is a user as listed: its name and roles, never its hash.
type UserInfo struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// RoleInfo is a role as listed.
type RoleInfo struct {
	Name   string  `json:"name"`
	Grants []Grant `json:"grants"`
}

// Users lists the users by name (a fresh read).
func (g *Guard) Users(ctx context.Context) ([]UserInfo, error) {
	s, _, err := g.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, 0, len(s.Users))
	for n, u := range s.Users {
		out = append(out, UserInfo{Name: n, Roles: append([]string{}, u.Roles...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Roles lists the roles by name (a fresh read).
func (g *Guard) Roles(ctx context.Context) ([]RoleInfo, error) {
	s, _, err := g.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RoleInfo, 0, len(s.Roles))
	for n, r := range s.Roles {
		out = append(out, RoleInfo{Name: n, Grants: append([]Grant{}, r.Grants...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
