package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// view is one node's way to the shared registers: it can be cut off from
// the quorum, can have an own acceptor copy of its own (a lagging
// acceptor), and can hold its next read after the read, so that a test
// runs a change in between.
type view struct {
	disk
	r     *registers
	mu    sync.Mutex
	cut   bool
	local *protocol.State
	// hold, if set, makes the next Get read, close read, then wait for hold.
	hold, read chan struct{}
}

func (v *view) Do(ctx context.Context, op kv.Op) (protocol.State, error) {
	v.mu.Lock()
	cut, hold, read := v.cut, v.hold, v.read
	if op.Kind == kv.OpGet {
		v.hold, v.read = nil, nil
	} else {
		hold = nil
	}
	v.mu.Unlock()
	if cut {
		return protocol.State{}, kv.ErrNoQuorum
	}
	s, err := v.r.Do(ctx, op)
	if hold != nil {
		close(read)
		<-hold
	}
	return s, err
}

func (v *view) Local(key string) (protocol.State, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.local != nil {
		return *v.local, nil
	}
	return v.r.Local(key)
}

func (v *view) setCut(cut bool) {
	v.mu.Lock()
	v.cut = cut
	v.mu.Unlock()
}

func guardOn(t *testing.T, regs Registers, c *clock) *Guard {
	t.Helper()
	g, err := New(Config{BcryptCost: bcrypt.MinCost, Now: c.now}, regs)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// enabledCluster is a cluster with auth enabled: root, and alice holding
// readwrite on "app/" through the role app; b is the node that set it up.
func enabledCluster(t *testing.T) (r *registers, c *clock, b *Guard) {
	t.Helper()
	r = &registers{regs: map[string]protocol.State{}}
	c = &clock{t: time.Unix(1e9, 0)}
	b = guardOn(t, &view{r: r}, c)
	ctx := context.Background()
	for _, err := range []error{
		b.AddUser(ctx, RootUser, "rootpw"),
		b.AddUser(ctx, "alice", "old"),
		b.AddRole(ctx, "app"),
		b.GrantPerm(ctx, "app", Grant{Perm: PermReadWrite, Key: "app/", Prefix: true}),
		b.GrantRole(ctx, "alice", "app"),
		b.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return r, c, b
}

// TestLoginNeedsQuorum: a node cut off from the quorum mints no token,
// neither from the state it cached nor from its own acceptor's copy, so a
// password changed elsewhere cannot be used there (the token would work on
// every node).
func TestLoginNeedsQuorum(t *testing.T) {
	ctx := context.Background()
	r, c, b := enabledCluster(t)
	va := &view{r: r}
	a := guardOn(t, va, c)
	if _, err := a.Enabled(ctx); err != nil { // a caches the state
		t.Fatal(err)
	}
	if err := b.SetPassword(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	va.setCut(true)
	for _, tc := range []struct {
		name     string
		password string
		step     time.Duration
	}{
		{"old password, cache fresh", "old", 0},
		{"new password, cache fresh", "new", 0},
		{"old password, cache stale", "old", time.Hour},
	} {
		c.t = c.t.Add(tc.step)
		if tok, _, err := a.Login(ctx, "alice", tc.password); !errors.Is(err, kv.ErrNoQuorum) {
			t.Errorf("%s: token %q, %v; want kv.ErrNoQuorum", tc.name, tok, err)
		}
	}
	// A node that never read the state is cut off too: its own copy is
	// no ground for a token either.
	fresh := guardOn(t, &view{r: r, cut: true}, c)
	if _, _, err := fresh.Login(ctx, "alice", "new"); !errors.Is(err, kv.ErrNoQuorum) {
		t.Errorf("never read, no quorum: %v; want kv.ErrNoQuorum", err)
	}
	va.setCut(false)
	if _, _, err := a.Login(ctx, "alice", "old"); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("old password with a quorum: %v", err)
	}
	if _, _, err := a.Login(ctx, "alice", "new"); err != nil {
		t.Errorf("new password with a quorum: %v", err)
	}
}

// TestTokenGeneration: a token ends when its user's password changes or
// the user is deleted and added again, on the node that changed it at once
// and on another within Staleness; a role change leaves it (permissions
// are checked per request). A user changing its own password must give
// the current one.
func TestTokenGeneration(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		change    func(b *Guard) error
		changeErr error // what change answers; nil: it succeeds
		tokenLive bool  // the token taken before the change still works
	}{
		{"admin sets the password", func(b *Guard) error { return b.SetPassword(ctx, "alice", "new") }, nil, false},
		{"admin sets the same password", func(b *Guard) error { return b.SetPassword(ctx, "alice", "old") }, nil, false},
		{"own change, right current password", func(b *Guard) error { return b.ChangeOwnPassword(ctx, "alice", "old", "new") }, nil, false},
		{"own change, wrong current password", func(b *Guard) error { return b.ChangeOwnPassword(ctx, "alice", "guess", "new") }, kv.ErrPermissionDenied, true},
		{"own change, no current password", func(b *Guard) error { return b.ChangeOwnPassword(ctx, "alice", "", "new") }, kv.ErrPermissionDenied, true},
		{"deleted and added again", func(b *Guard) error {
			if err := b.DeleteUser(ctx, "alice"); err != nil {
				return err
			}
			if err := b.AddUser(ctx, "alice", "old"); err != nil {
				return err
			}
			return b.GrantRole(ctx, "alice", "app")
		}, nil, false},
		{"role revoked and granted again", func(b *Guard) error {
			if err := b.RevokeRole(ctx, "alice", "app"); err != nil {
				return err
			}
			return b.GrantRole(ctx, "alice", "app")
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c, b := enabledCluster(t)
			other := guardOn(t, &view{r: r}, c)
			tok, _, err := b.Login(ctx, "alice", "old")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Authenticate(ctx, Credentials{Token: tok}); err != nil {
				t.Fatal(err)
			}
			if err := tt.change(b); !errors.Is(err, tt.changeErr) || (tt.changeErr == nil) != (err == nil) {
				t.Fatalf("change: %v, want %v", err, tt.changeErr)
			}
			check := func(who string, g *Guard) {
				p, err := g.Authenticate(ctx, Credentials{Token: tok})
				switch {
				case tt.tokenLive && (err != nil || p.User != "alice"):
					t.Errorf("%s: the token ended: %+v, %v", who, p, err)
				case !tt.tokenLive && !errors.Is(err, kv.ErrUnauthenticated):
					t.Errorf("%s: the token still works: %+v, %v", who, p, err)
				}
			}
			check("changing node, at once", b)
			c.t = c.t.Add(DefaultConfig().Staleness)
			check("other node, past Staleness", other)
		})
	}
}

// TestFailClosed: a node cut off from the quorum that has not read the
// auth state since it started treats auth as disabled only if the last
// quorum read it kept on its disk found it disabled and its own acceptor
// holds no enabled state; otherwise it refuses every request that needs
// authorization, anonymous admin first among them.
func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	r, c, _ := enabledCluster(t)
	enabled := r.regs[StateKey]
	disabledBytes, err := State{}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	disabled := protocol.State{Version: 1, Value: disabledBytes}
	empty := protocol.State{}
	tests := []struct {
		name   string
		seen   *Seen // what the node's disk kept; nil: nothing
		local  *protocol.State
		closed bool
	}{
		{"never read, acceptor lags", nil, &empty, true},
		{"never read, acceptor holds enabled", nil, &enabled, true},
		{"never read, acceptor holds disabled", nil, &disabled, true},
		{"enabled at the last read, acceptor lags", &Seen{Enabled: true, Version: 7}, &empty, true},
		{"enabled at the last read, acceptor holds disabled", &Seen{Enabled: true, Version: 7}, &disabled, true},
		{"disabled at the last read, acceptor holds enabled", &Seen{Version: 1}, &enabled, true},
		{"disabled at the last read, acceptor lags", &Seen{Version: 1}, &empty, false},
		{"disabled at the last read, acceptor holds disabled", &Seen{Version: 1}, &disabled, false},
	}
	for _, tt := range tests {
		v := &view{r: r, cut: true, local: tt.local}
		if tt.seen != nil {
			v.seen, v.seenOK = *tt.seen, true
		}
		g := guardOn(t, v, c)
		p, err := g.Authenticate(ctx, Credentials{})
		if err == nil {
			err = g.Authorize(ctx, p, Access{Perm: PermAdmin})
		}
		if tt.closed && (!errors.Is(err, ErrStateUnknown) || !errors.Is(err, kv.ErrNoQuorum)) {
			t.Errorf("%s: anonymous admin: %+v, %v; want ErrStateUnknown and kv.ErrNoQuorum", tt.name, p, err)
		}
		if !tt.closed && (err != nil || !p.Open) {
			t.Errorf("%s: anonymous admin: %+v, %v; want open", tt.name, p, err)
		}
		// Once the quorum answers, the node goes by what it read.
		v.setCut(false)
		if _, err := g.Authenticate(ctx, Credentials{}); !errors.Is(err, kv.ErrUnauthenticated) {
			t.Errorf("%s: with the quorum back: %v", tt.name, err)
		}
		if seen, ok, _ := v.Seen(); !ok || !seen.Enabled || seen.Version != enabled.Version {
			t.Errorf("%s: the node kept %+v (%v) after its read, want enabled at version %d", tt.name, seen, ok, enabled.Version)
		}
	}
}

// TestSeenWriteFails: a node that cannot keep what it read on its disk
// refuses the request rather than go on with a disk that may say that
// auth is disabled.
func TestSeenWriteFails(t *testing.T) {
	ctx := context.Background()
	r, c, _ := enabledCluster(t)
	v := &view{r: r}
	v.disk.err = errors.New("disk full")
	g := guardOn(t, v, c)
	if _, err := g.Authenticate(ctx, Credentials{}); err == nil || errors.Is(err, kv.ErrUnauthenticated) {
		t.Fatalf("the disk failed: %v, want its error", err)
	}
}

// TestCacheNeverRegresses: a refresh that read the state before a revoke
// made on the same node, and ends after it, does not bring the revoked
// grant back; and the cache's age counts from its read's start, so that a
// slow read does not stretch the staleness bound.
func TestCacheNeverRegresses(t *testing.T) {
	ctx := context.Background()
	r, c, _ := enabledCluster(t)
	v := &view{r: r}
	a := guardOn(t, v, c)
	alice := Principal{User: "alice"}
	write := Access{Perm: PermWrite, Key: "app/x"}
	if err := a.Authorize(ctx, alice, write); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(DefaultConfig().Staleness) // the cache is stale
	hold, read := make(chan struct{}), make(chan struct{})
	v.mu.Lock()
	v.hold, v.read = hold, read
	v.mu.Unlock()
	done := make(chan error)
	go func() { done <- a.Authorize(ctx, alice, write) }() // reads, then waits
	<-read
	if err := a.RevokeRole(ctx, "alice", "app"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authorize(ctx, alice, write); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Fatalf("right after the revoke: %v", err)
	}
	close(hold)
	<-done // checked against what it read before the revoke: either answer
	if err := a.Authorize(ctx, alice, write); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Errorf("after the older refresh ended: %v; the revoke was undone", err)
	}

	// A read that took the whole staleness bound leaves a stale cache:
	// the next request reads again and sees a change made elsewhere.
	b := guardOn(t, &view{r: r}, c)
	c.t = c.t.Add(DefaultConfig().Staleness)
	hold, read = make(chan struct{}), make(chan struct{})
	v.mu.Lock()
	v.hold, v.read = hold, read
	v.mu.Unlock()
	go func() { done <- a.Authorize(ctx, alice, write) }()
	<-read
	if err := b.GrantRole(ctx, "alice", "app"); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(DefaultConfig().Staleness)
	close(hold)
	<-done
	if err := a.Authorize(ctx, alice, write); err != nil {
		t.Errorf("a slow read stretched the staleness bound: the grant made elsewhere is not seen: %v", err)
	}
}

// TestGrantKeyAnyBytes: a grant's key of any bytes survives the stored
// state: another node checks and revokes the grant as given, and a key
// with U+FFFD in place of the bytes is not covered.
func TestGrantKeyAnyBytes(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, key, inside, lookalike string
	}{
		{"not UTF-8", "t\xff", "t\xffx", "t\uFFFDx"},
		{"a lone continuation byte", "\x80k/", "\x80k/1", "\uFFFDk/1"},
		{"UTF-8", "té/", "té/1", "te/1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, c, b := enabledCluster(t)
			gr := Grant{Perm: PermRead, Key: tt.key, Prefix: true}
			if err := b.GrantPerm(ctx, "app", gr); err != nil {
				t.Fatal(err)
			}
			other := guardOn(t, &view{r: r}, c)
			alice := Principal{User: "alice"}
			if err := other.Authorize(ctx, alice, Access{Perm: PermRead, Key: tt.inside}); err != nil {
				t.Errorf("the other node, a key under the grant: %v", err)
			}
			if err := other.Authorize(ctx, alice, Access{Perm: PermRead, Key: tt.lookalike}); !errors.Is(err, kv.ErrPermissionDenied) {
				t.Errorf("the other node, a lookalike key: %v", err)
			}
			roles, err := other.Roles(ctx)
			if err != nil || len(roles) != 1 || len(roles[0].Grants) != 2 || roles[0].Grants[1] != gr {
				t.Errorf("listed: %+v, %v", roles, err)
			}
			if err := other.RevokePerm(ctx, "app", gr); err != nil {
				t.Errorf("revoke as granted: %v", err)
			}
		})
	}
	var g Grant
	if err := g.UnmarshalJSON([]byte(`{"perm":"read","key":"a","key_b64":"YQ=="}`)); err == nil {
		t.Errorf("a grant with both key and key_b64 decoded: %+v", g)
	}
}

// TestLoginsBounded: past MaxConcurrentLogins password checks at once, a
// login or an own password change is refused at once as overloaded; once
// one ends, logins go through again.
func TestLoginsBounded(t *testing.T) {
	ctx := context.Background()
	r, c, _ := enabledCluster(t)
	v := &view{r: r}
	g, err := New(Config{BcryptCost: bcrypt.MinCost, Now: c.now, MaxConcurrentLogins: 1}, v)
	if err != nil {
		t.Fatal(err)
	}
	hold, read := make(chan struct{}), make(chan struct{})
	v.mu.Lock()
	v.hold, v.read = hold, read
	v.mu.Unlock()
	done := make(chan error)
	go func() {
		_, _, err := g.Login(ctx, "alice", "old") // holds the one place
		done <- err
	}()
	<-read
	for name, call := range map[string]func() error{
		"login": func() error { _, _, err := g.Login(ctx, "root", "rootpw"); return err },
		"own password change": func() error {
			return g.ChangeOwnPassword(ctx, "alice", "old", "new")
		},
	} {
		if err := call(); !errors.Is(err, kv.ErrOverloaded) {
			t.Errorf("%s past the bound: %v, want kv.ErrOverloaded", name, err)
		}
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatalf("the held login: %v", err)
	}
	if _, _, err := g.Login(ctx, "root", "rootpw"); err != nil {
		t.Errorf("login once the place is free: %v", err)
	}
}
