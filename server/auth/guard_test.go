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

// registers is an in-memory Registers: each key's state, changed by the
// ops' own change functions, as a node would.
type registers struct {
	disk
	mu   sync.Mutex
	regs map[string]protocol.State
	err  error // every op fails with it when set
}

// disk is a node's own disk, for Registers.Seen and SetSeen.
type disk struct {
	mu     sync.Mutex
	seen   Seen
	seenOK bool
	err    error // SetSeen fails with it when set
}

func (d *disk) Seen() (Seen, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen, d.seenOK, nil
}

func (d *disk) SetSeen(s Seen) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.seen, d.seenOK = s, true
	return nil
}

// Local answers what the cluster holds: one acceptor saw every change.
func (r *registers) Local(key string) (protocol.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.regs[key], nil
}

func (r *registers) Do(_ context.Context, op kv.Op) (protocol.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return protocol.State{}, r.err
	}
	cur := r.regs[op.Key]
	if op.Kind == kv.OpGet {
		return cur, nil
	}
	w, err := op.Change()(cur)
	if err != nil {
		return cur, err
	}
	next := protocol.State{Version: cur.Version + 1, Value: w.Value}
	r.regs[op.Key] = next
	return next, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newGuard(t *testing.T, r *registers, c *clock) *Guard {
	t.Helper()
	g, err := New(Config{BcryptCost: bcrypt.MinCost, Now: c.now}, r)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGuard(t *testing.T) {
	ctx := context.Background()
	r := &registers{regs: map[string]protocol.State{}}
	c := &clock{t: time.Unix(1e6, 0)}
	a, b := newGuard(t, r, c), newGuard(t, r, c) // two nodes
	if p, err := b.Authenticate(ctx, Credentials{}); err != nil || !p.Open {
		t.Fatalf("auth off: %+v, %v", p, err)
	}
	if err := a.Enable(ctx); !errors.Is(err, ErrRefused) {
		t.Fatalf("enable without root: %v", err)
	}
	for _, err := range []error{
		a.AddUser(ctx, RootUser, "rootpw"),
		a.AddUser(ctx, "alice", "alicepw"),
		b.AddRole(ctx, "app"), // through the other node: a's next change must see it
		a.GrantPerm(ctx, "app", Grant{Perm: PermReadWrite, Key: "app/", Prefix: true}),
		a.GrantRole(ctx, "alice", "app"),
		a.Enable(ctx),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.Login(ctx, "alice", "wrong"); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("wrong password: %v", err)
	}
	if _, _, err := a.Login(ctx, "nobody", "alicepw"); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("unknown user: %v", err)
	}
	tok, exp, err := a.Login(ctx, "alice", "alicepw")
	if err != nil || !exp.Equal(c.t.Add(DefaultConfig().TokenTTL)) {
		t.Fatalf("login: %v, expiry %v", err, exp)
	}
	// b cached "disabled": it sees the enable once its cache is stale.
	if p, _ := b.Authenticate(ctx, Credentials{}); !p.Open {
		t.Fatalf("b saw the enable before its staleness bound")
	}
	c.t = c.t.Add(DefaultConfig().Staleness)
	p, err := b.Authenticate(ctx, Credentials{Token: tok})
	if err != nil || p.User != "alice" {
		t.Fatalf("b with alice's token: %+v, %v", p, err)
	}
	if err := b.Authorize(ctx, p, Access{PermWrite, "app/1"}); err != nil {
		t.Errorf("alice writes app/1: %v", err)
	}
	if err := b.Authorize(ctx, p, Access{PermWrite, "app0"}); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Errorf("alice writes app0: %v", err)
	}
	if _, err := b.Authenticate(ctx, Credentials{}); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("no credentials: %v", err)
	}
	if p, err := b.Authenticate(ctx, Credentials{CommonNames: []string{"alice"}}); err != nil || p.User != "alice" {
		t.Errorf("certificate CN alice: %+v, %v", p, err)
	}
	if _, err := b.Authenticate(ctx, Credentials{CommonNames: []string{"mallory"}}); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("certificate CN mallory: %v", err)
	}
	// A revoke on a takes effect on a at once, on b within Staleness.
	if err := a.RevokeRole(ctx, "alice", "app"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authorize(ctx, p, Access{PermWrite, "app/1"}); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Errorf("a after the revoke: %v", err)
	}
	c.t = c.t.Add(DefaultConfig().Staleness)
	if err := b.Authorize(ctx, p, Access{PermWrite, "app/1"}); !errors.Is(err, kv.ErrPermissionDenied) {
		t.Errorf("b past Staleness after the revoke: %v", err)
	}
	// The token expires after TokenTTL.
	c.t = exp
	if _, err := b.Authenticate(ctx, Credentials{Token: tok}); !errors.Is(err, kv.ErrUnauthenticated) || !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired token: %v", err)
	}
	// Unreachable registers: the last state read holds; a node that never
	// read one refuses (fault_test.go).
	r.mu.Lock()
	r.err = kv.ErrNoQuorum
	r.mu.Unlock()
	c.t = c.t.Add(time.Hour)
	if _, err := b.Authenticate(ctx, Credentials{}); !errors.Is(err, kv.ErrUnauthenticated) {
		t.Errorf("no quorum, stale state: %v", err)
	}
	fresh := newGuard(t, r, c)
	if _, err := fresh.Authenticate(ctx, Credentials{}); !errors.Is(err, ErrStateUnknown) || !errors.Is(err, kv.ErrNoQuorum) {
		t.Errorf("no quorum, never read, enabled at the last read: %v", err)
	}
}

// TestGuardConcurrentChanges: changes racing on two nodes all land (the
// compare-and-swap retries), none lost.
func TestGuardConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	r := &registers{regs: map[string]protocol.State{}}
	c := &clock{t: time.Unix(1e6, 0)}
	guards := []*Guard{newGuard(t, r, c), newGuard(t, r, c)}
	var wg sync.WaitGroup
	names := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := guards[i%2].AddRole(ctx, n); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	roles, err := guards[0].Roles(ctx)
	if err != nil || len(roles) != len(names) {
		t.Errorf("roles after concurrent adds: %v, %v", roles, err)
	}
}
