package consulapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/kv"
)

// clock is a settable clock for lock delays.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func TestSessionsAndLocks(t *testing.T) {
	b := newBackend()
	clk := &clock{now: time.Now()}
	srv := serve(t, b, Config{NodeName: "n1", Now: clk.Now})
	create := func(body string) string {
		t.Helper()
		r := do(t, srv, "PUT", "/v1/session/create", body)
		var out struct{ ID string }
		if r.status != 200 || json.Unmarshal([]byte(r.body), &out) != nil || out.ID == "" {
			t.Fatalf("create %s: %d %s", body, r.status, r.body)
		}
		return out.ID
	}
	for _, tc := range []struct{ body, want string }{
		{``, "needs a TTL"},
		{`{"TTL":"5s"}`, "Invalid Session TTL"},
		{`{"TTL":"15s","Checks":["service:web"]}`, "runs no health checks"},
		{`{"TTL":"15s","Behavior":"keep"}`, "release or delete"},
		{`{"TTL":"15s","LockDelay":"2m"}`, "LockDelay"},
		{`{"TTL":"15s","Bogus":1}`, "decode"},
	} {
		if r := do(t, srv, "PUT", "/v1/session/create", tc.body); r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Fatalf("create %s: %d %q, want 400 with %q", tc.body, r.status, r.body, tc.want)
		}
	}
	s1 := create(`{"TTL":"15s","Name":"one","Checks":["serfHealth"]}`)
	s2 := create(`{"TTL":"15s","LockDelay":"15000ms"}`)
	if r := do(t, srv, "GET", "/v1/session/info/"+s1, ""); r.status != 200 || !strings.Contains(r.body, `"Name":"one"`) || !strings.Contains(r.body, `"Node":"n1"`) {
		t.Fatalf("info: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/session/node/n1", ""); r.status != 200 || strings.Count(r.body, `"ID"`) != 2 {
		t.Fatalf("node: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/session/renew/"+s1, ""); r.status != 200 || !strings.Contains(r.body, s1) {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	holder := func(key string) (string, uint64, int) {
		t.Helper()
		r := do(t, srv, "GET", "/v1/kv/"+key, "")
		if r.status != 200 {
			return "", 0, r.status
		}
		p := pairs(t, r)[0]
		return p.Session, p.LockIndex, r.status
	}
	for _, step := range []struct {
		name, query, want string
		session           string
		lockIndex         uint64
	}{
		{"s1 acquires", "acquire=" + s1, "true", s1, 1},
		{"s2 cannot", "acquire=" + s2, "false", s1, 1},
		{"s1 again", "acquire=" + s1, "true", s1, 1},
		{"s2 cannot release", "release=" + s2, "false", s1, 1},
		{"s1 releases", "release=" + s1, "true", "", 1},
		{"s2 acquires", "acquire=" + s2, "true", s2, 2},
		{"a plain write keeps the lock", "flags=3", "true", s2, 2},
	} {
		if r := do(t, srv, "PUT", "/v1/kv/lock?"+step.query, "v"); r.status != 200 || strings.TrimSpace(r.body) != step.want {
			t.Fatalf("%s: %d %s, want %s", step.name, r.status, r.body, step.want)
		}
		if s, li, _ := holder("lock"); s != step.session || li != step.lockIndex {
			t.Fatalf("%s: held by %q, LockIndex %d; want %q, %d", step.name, s, li, step.session, step.lockIndex)
		}
	}
	// A destroyed session's key is released at its next read (no delay).
	if r := do(t, srv, "PUT", "/v1/session/destroy/"+s2, ""); r.status != 200 {
		t.Fatalf("destroy: %d %s", r.status, r.body)
	}
	if s, li, st := holder("lock"); st != 200 || s != "" || li != 2 {
		t.Fatalf("after its session's destroy: %d held by %q LockIndex %d; want free, 2", st, s, li)
	}
	if r := do(t, srv, "PUT", "/v1/session/renew/"+s2, ""); r.status != 404 {
		t.Fatalf("renew of a destroyed session: %d", r.status)
	}
	if r := do(t, srv, "PUT", "/v1/kv/lock?acquire="+s2, ""); r.status != 400 {
		t.Fatalf("acquire with a destroyed session: %d %s", r.status, r.body)
	}
	// Behavior delete: the key goes with its session.
	s3 := create(`{"TTL":"15s","Behavior":"delete"}`)
	do(t, srv, "PUT", "/v1/kv/eph?acquire="+s3, "x")
	do(t, srv, "PUT", "/v1/session/destroy/"+s3, "")
	if _, _, st := holder("eph"); st != 404 {
		t.Fatalf("a delete session's key after its destroy: %d, want 404", st)
	}
	// An expired session's key stays held through its lock delay.
	s4 := create(`{"TTL":"15s","LockDelay":"20s"}`)
	do(t, srv, "PUT", "/v1/kv/held?acquire="+s4, "x")
	id, err := parseSessionID(s4)
	if err != nil {
		t.Fatal(err)
	}
	expiredAt := clk.Now().Add(-time.Second)
	lease := kv.EncodeLease(kv.Lease{TTLMillis: 15000, RenewedMillis: expiredAt.UnixMilli() - 15000, State: kv.LeaseExpired})
	if _, err := b.Do(context.Background(), kv.Op{Kind: kv.OpRestore, Key: kv.LeaseKey(id), Value: lease}); err != nil {
		t.Fatal(err)
	}
	// Shown free at once, as Consul clears Session when it invalidates a
	// session: by a GET, a listing and a transaction's get; the key itself
	// keeps its holder until it is settled.
	if s, li, st := holder("held"); st != 200 || s != "" || li != 1 {
		t.Fatalf("within the lock delay: %d held by %q LockIndex %d, want free, 1", st, s, li)
	}
	if r := do(t, srv, "GET", "/v1/kv/he?recurse", ""); r.status != 200 || len(pairs(t, r)) != 1 || pairs(t, r)[0].Session != "" {
		t.Fatalf("listing within the lock delay: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/txn", `[{"KV":{"Verb":"get","Key":"held"}}]`); r.status != 200 || !strings.Contains(r.body, `"Key":"held"`) || strings.Contains(r.body, `"Session"`) {
		t.Fatalf("a transaction's get within the lock delay: %d %s", r.status, r.body)
	}
	if st, err := b.Do(context.Background(), kv.Op{Kind: kv.OpGet, Key: "held"}); err != nil || st.Lease != id {
		t.Fatalf("the key within the lock delay: %+v %v; want still held by lease %x", st, err, id)
	}
	if r := do(t, srv, "PUT", "/v1/kv/held?acquire="+s1, ""); strings.TrimSpace(r.body) != "false" {
		t.Fatalf("acquire within the lock delay: %d %s", r.status, r.body)
	}
	// Nor can the ended session cut the delay short by a release.
	if r := do(t, srv, "PUT", "/v1/kv/held?release="+s4, ""); r.status != 200 || strings.TrimSpace(r.body) != "false" {
		t.Fatalf("release by the ended holder: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/kv/held?acquire="+s1, ""); strings.TrimSpace(r.body) != "false" {
		t.Fatalf("acquire within the lock delay, after the ended holder's release: %d %s", r.status, r.body)
	}
	// While held by a live session, a key shows it.
	do(t, srv, "PUT", "/v1/kv/held2?acquire="+s1, "x")
	if r := do(t, srv, "PUT", "/v1/txn", `[{"KV":{"Verb":"get","Key":"held2"}}]`); r.status != 200 || !strings.Contains(r.body, `"Session":"`+s1+`"`) {
		t.Fatalf("a transaction's get of a held key: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/kv/held2?recurse", ""); r.status != 200 || pairs(t, r)[0].Session != s1 {
		t.Fatalf("listing of a held key: %d %s", r.status, r.body)
	}
	do(t, srv, "PUT", "/v1/kv/held2?release="+s1, "x")
	clk.set(expiredAt.Add(20*time.Second + time.Millisecond))
	if r := do(t, srv, "PUT", "/v1/kv/held?acquire="+s1, ""); strings.TrimSpace(r.body) != "true" {
		t.Fatalf("acquire after the lock delay: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/session/list", ""); r.status != 200 || strings.Count(r.body, `"ID"`) != 1 || !strings.Contains(r.body, s1) {
		t.Fatalf("list: %d %s, want s1 alone", r.status, r.body)
	}
	// A blocking query on a held key returns when its session ends (the
	// key's own version does not move until it is settled).
	s5 := create(`{"TTL":"15s","LockDelay":"0s"}`)
	do(t, srv, "PUT", "/v1/kv/blk?acquire="+s5, "x")
	idx := do(t, srv, "GET", "/v1/kv/blk", "").index
	done := make(chan reply, 1)
	watches := b.watchCount()
	go func() { done <- do(t, srv, "GET", "/v1/kv/blk?index="+strconv.FormatUint(idx, 10)+"&wait=30s", "") }()
	b.waitWatches(t, watches+1)
	do(t, srv, "PUT", "/v1/session/destroy/"+s5, "")
	select {
	case r := <-done:
		if r.status != 200 || r.index == idx || pairs(t, r)[0].Session != "" {
			t.Fatalf("blocking query after the holder's end: %d index %d %s", r.status, r.index, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocking query on a held key did not return when its session ended")
	}
}

// createSession creates a session from body and returns its ID.
func createSession(t *testing.T, srv *httptest.Server, body string) string {
	t.Helper()
	r := do(t, srv, "PUT", "/v1/session/create", body)
	var out struct{ ID string }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &out) != nil || out.ID == "" {
		t.Fatalf("create %s: %d %s", body, r.status, r.body)
	}
	return out.ID
}

// expireSession commits the expiry of session sid's lease, as expired at
// at (renewed a TTL before).
func expireSession(t *testing.T, b *backend, sid string, at time.Time) {
	t.Helper()
	id, err := parseSessionID(sid)
	if err != nil {
		t.Fatal(err)
	}
	lease := kv.EncodeLease(kv.Lease{TTLMillis: 15000, RenewedMillis: at.UnixMilli() - 15000, State: kv.LeaseExpired})
	if _, err := b.Do(context.Background(), kv.Op{Kind: kv.OpRestore, Key: kv.LeaseKey(id), Value: lease}); err != nil {
		t.Fatal(err)
	}
}

// A blocking GET on a held key returns as soon as its holder's lease
// ends, the key shown free at the same index (a renewal wakes nothing);
// a blocking GET at that index, whose holder is dead within its lock
// delay, sleeps until the delay ends, when the key is settled, rather than
// answering the same at once; acquires fail until then.
func TestHolderEndWakesBlockingGet(t *testing.T) {
	const delay = 2 * time.Second
	b := newBackend()
	srv := serve(t, b, Config{}) // the real clock: the delay's end is a timer
	sid := createSession(t, srv, `{"TTL":"15s","LockDelay":"2s"}`)
	other := createSession(t, srv, `{"TTL":"15s"}`)
	if r := do(t, srv, "PUT", "/v1/kv/k?acquire="+sid, "x"); strings.TrimSpace(r.body) != "true" {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	r := do(t, srv, "GET", "/v1/kv/k", "")
	if r.status != 200 || pairs(t, r)[0].Session != sid {
		t.Fatalf("the held key: %d %s", r.status, r.body)
	}
	idx := r.index
	blocking := func() <-chan reply {
		done := make(chan reply, 1)
		watches := b.watchCount()
		go func() { done <- do(t, srv, "GET", "/v1/kv/k?index="+strconv.FormatUint(idx, 10)+"&wait=30s", "") }()
		b.waitWatches(t, watches+1)
		return done
	}
	answer := func(done <-chan reply, what string) reply {
		t.Helper()
		select {
		case r := <-done:
			if r.status != 200 {
				t.Fatalf("%s: %d %s", what, r.status, r.body)
			}
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", what)
		}
		return reply{}
	}

	done := blocking()
	if r := do(t, srv, "PUT", "/v1/session/renew/"+sid, ""); r.status != 200 {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	expiredAt := time.Now()
	expireSession(t, b, sid, expiredAt)
	// The same index shows the answer came within the delay: after it,
	// the read would have settled the key at a new version.
	if r := answer(done, "blocking GET when the holder expires"); r.index != idx || pairs(t, r)[0].Session != "" {
		t.Fatalf("blocking GET when the holder expires: index %d (want %d) %s", r.index, idx, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/kv/k?acquire="+other, ""); strings.TrimSpace(r.body) != "false" {
		t.Fatalf("acquire within the lock delay: %d %s", r.status, r.body)
	}

	done = blocking()
	r = answer(done, "blocking GET within the lock delay")
	if now := time.Now(); now.Before(expiredAt.Add(delay - time.Millisecond)) {
		t.Fatalf("blocking GET within the lock delay answered %v before its end: %s", expiredAt.Add(delay).Sub(now), r.body)
	}
	if r.index == idx || pairs(t, r)[0].Session != "" {
		t.Fatalf("blocking GET at the delay's end: index %d (was %d) %s; want settled", r.index, idx, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/kv/k?acquire="+other, ""); strings.TrimSpace(r.body) != "true" {
		t.Fatalf("acquire after the lock delay: %d %s", r.status, r.body)
	}

	// A blocking GET at the index of a key whose holder has ended with no
	// lock delay left (a destroy) settles it first and answers at once.
	r = do(t, srv, "GET", "/v1/kv/k", "")
	if r.status != 200 || pairs(t, r)[0].Session != other {
		t.Fatalf("the key held again: %d %s", r.status, r.body)
	}
	do(t, srv, "PUT", "/v1/session/destroy/"+other, "")
	start := time.Now()
	r2 := do(t, srv, "GET", "/v1/kv/k?index="+strconv.FormatUint(r.index, 10)+"&wait=30s", "")
	if r2.status != 200 || r2.index == r.index || pairs(t, r2)[0].Session != "" || time.Since(start) > 10*time.Second {
		t.Fatalf("blocking GET after the holder's destroy: %d index %d (was %d) after %v: %s", r2.status, r2.index, r.index, time.Since(start), r2.body)
	}
}

// A lease that is no session (one of the client port's) is neither
// renewed, destroyed nor used to acquire through the session endpoints,
// and a key attached to it is left to the lease reaper once it ends: a
// Consul read does not release it.
func TestLeaseIsNoSession(t *testing.T) {
	b := newBackend()
	srv := serve(t, b, Config{})
	ctx := context.Background()
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(77), Delta: 60000}); err != nil {
		t.Fatal(err)
	}
	id := sessionID(77)
	if r := do(t, srv, "PUT", "/v1/session/renew/"+id, ""); r.status != 404 {
		t.Fatalf("renew: %d", r.status)
	}
	if r := do(t, srv, "PUT", "/v1/session/destroy/"+id, ""); r.status != 200 {
		t.Fatalf("destroy: %d", r.status)
	}
	if r := do(t, srv, "PUT", "/v1/kv/k?acquire="+id, ""); r.status != 400 {
		t.Fatalf("acquire: %d %s", r.status, r.body)
	}
	st, err := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(77)})
	if l, err2 := kv.LeaseOf(st); err != nil || err2 != nil || l.State != kv.LeaseLive {
		t.Fatalf("the lease after: %+v %v %v", l, err, err2)
	}
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpPut, Key: "attached", Value: []byte("v"), Lease: 77}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Do(ctx, kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(77)}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, srv, "GET", "/v1/kv/attached", ""); r.status != 200 {
		t.Fatalf("GET of a key attached to an ended lease: %d %s", r.status, r.body)
	}
	if st, err := b.Do(ctx, kv.Op{Kind: kv.OpGet, Key: "attached"}); err != nil || st.Lease != 77 {
		t.Fatalf("a Consul read changed a key of an ended lease that is no session's: %+v %v", st, err)
	}
}

func TestSessionIDs(t *testing.T) {
	for _, id := range []uint64{1, 0xffff_ffff_ffff_ffff, 0x1234_5678_9abc_def0} {
		got, err := parseSessionID(sessionID(id))
		if err != nil || got != id {
			t.Fatalf("%x: %s read back as %x, %v", id, sessionID(id), got, err)
		}
	}
	for _, s := range []string{"", "00000000-0000-0000-0000-000000000000", "adf4238a-882b-9ddc-4a9d-5b6758e4159e", "00000000-0000-0000-00000-00000000001"} {
		if _, err := parseSessionID(s); err == nil {
			t.Fatalf("%q was read as a session ID", s)
		}
	}
}
