package consulapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Sessions (/v1/session/...), on top of leases (kv/lease.go).
//
// A session is a lease: its ID is the lease's ID written as a UUID
// (sessionID), its TTL the lease's, a renew a keep-alive, a destroy a
// revoke; it ends when its lease expires (a committed change, server/lease)
// or is revoked. What Consul keeps beside (name, node, lock delay,
// behaviour, checks) is kept in one register of the cluster's reserved
// space, the session table (sessionsKey), changed by compare-and-swap: at
// most Config.MaxSessions sessions, the ended ones dropped when it fills
// (a key still held by a dropped session is settled as by Behavior
// release, with the default lock delay).
//
// A key held by a session records the lease in its attributes
// (kv.KeyAcquire). A lease that ends releases nothing by itself: whoever
// next reads a key held by an ended session (a GET, a listing, an acquire
// of that key) settles it (settle): once the session's lock delay has
// passed since its lease expired (none after a destroy), the key is
// released (Behavior release) or deleted (Behavior delete), on the version
// read, so that no change since is undone. Until then the stored holder
// refuses every acquire (and the ended session's release), as Consul's
// lock delay does, while reads show the key free (holding.view), as Consul
// clears a key's Session when it invalidates the session. A blocking query
// on a held key watches its holder's lease and wakes at its end; one on a
// key whose holder ended within its lock delay wakes at the delay's end,
// and its read settles the key (waitKey).

// sessionsKey is the session table's register.
const sessionsKey = kv.ReservedPrefix + "consul/sessions"

// Consul's session TTL bounds. A session's lock delay is a lock's
// (kv.DefaultLockDelay, at most kv.MaxLockDelay: Consul's own numbers).
const (
	MinSessionTTL = 10 * time.Second
	MaxSessionTTL = 24 * time.Hour
)

// storedSession is what the table keeps of a session beside its lease.
type storedSession struct {
	Name        string
	Node        string
	LockDelay   time.Duration
	Behavior    string
	TTL         string
	Checks      []string
	CreateIndex uint64
	// User created it: only they (or an admin) renew or destroy it.
	User string `json:",omitempty"`
}

// sessionTable is the table's value: sessions by lease ID (hex).
type sessionTable struct {
	Sessions map[string]storedSession
}

// sessionJSON is a session as Consul's API shows it (api.SessionEntry).
type sessionJSON struct {
	ID          string
	Name        string
	Node        string
	LockDelay   time.Duration
	Behavior    string
	TTL         string
	Checks      []string
	NodeChecks  []string
	CreateIndex uint64
	ModifyIndex uint64
}

func (s storedSession) view(id uint64) sessionJSON {
	return sessionJSON{ID: sessionID(id), Name: s.Name, Node: s.Node, LockDelay: s.LockDelay, Behavior: s.Behavior,
		TTL: s.TTL, Checks: s.Checks, NodeChecks: s.Checks, CreateIndex: s.CreateIndex, ModifyIndex: s.CreateIndex}
}

// parseSessionID reads a session ID (sessionID's form) back to its lease.
func parseSessionID(s string) (uint64, error) {
	const head = "00000000-0000-0000-"
	rest, ok := strings.CutPrefix(s, head)
	if !ok || len(rest) != 17 || rest[4] != '-' {
		return 0, fmt.Errorf("%w: session %q is not a session of this cluster", errBadRequest, s)
	}
	hi, err1 := strconv.ParseUint(rest[:4], 16, 16)
	lo, err2 := strconv.ParseUint(rest[5:], 16, 48)
	if err1 != nil || err2 != nil || hi<<48|lo == 0 || sessionID(hi<<48|lo) != s { // lower-case hex only
		return 0, fmt.Errorf("%w: session %q is not a session of this cluster", errBadRequest, s)
	}
	return hi<<48 | lo, nil
}

// sessionRequest is the body of /v1/session/create.
type sessionRequest struct {
	Name, Node, Behavior, TTL string
	LockDelay                 json.RawMessage
	Checks, NodeChecks        []string
	ServiceChecks             []json.RawMessage
	Namespace, Partition      string
}

// parseSessionRequest reads and checks a create's body (empty: all
// defaults, which caspaxos refuses for want of a TTL).
func parseSessionRequest(body []byte) (storedSession, time.Duration, error) {
	var r sessionRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return storedSession{}, 0, fmt.Errorf("%w: Request decode failed: %v", errBadRequest, err)
		}
	}
	if (r.Namespace != "" && r.Namespace != "default") || (r.Partition != "" && r.Partition != "default") {
		return storedSession{}, 0, fmt.Errorf("%w: caspaxos has only the default namespace and partition", errBadRequest)
	}
	s := storedSession{Name: r.Name, Node: r.Node, Behavior: r.Behavior, TTL: r.TTL, LockDelay: kv.DefaultLockDelay}
	switch s.Behavior {
	case "":
		s.Behavior = "release"
	case "release", "delete":
	default:
		return storedSession{}, 0, fmt.Errorf("%w: Behavior %q: want release or delete", errBadRequest, s.Behavior)
	}
	if r.TTL == "" {
		return storedSession{}, 0, fmt.Errorf("%w: a session needs a TTL (%v to %v): caspaxos ends a session only by its TTL or a destroy, never by a node's health", errBadRequest, MinSessionTTL, MaxSessionTTL)
	}
	ttl, err := time.ParseDuration(r.TTL)
	if err != nil || ttl < MinSessionTTL || ttl > MaxSessionTTL || ttl%time.Millisecond != 0 {
		return storedSession{}, 0, fmt.Errorf("%w: Invalid Session TTL %q: want a duration from %v to %v", errBadRequest, r.TTL, MinSessionTTL, MaxSessionTTL)
	}
	if len(r.LockDelay) > 0 {
		if s.LockDelay, err = parseLockDelay(r.LockDelay); err != nil {
			return storedSession{}, 0, err
		}
	}
	checks := append(slices.Clone(r.Checks), r.NodeChecks...)
	for _, c := range checks {
		if c != "serfHealth" {
			return storedSession{}, 0, fmt.Errorf("%w: health check %q: caspaxos runs no health checks; a session ends by its TTL or a destroy (only serfHealth, which it ignores, is taken)", errBadRequest, c)
		}
	}
	if len(r.ServiceChecks) > 0 {
		return storedSession{}, 0, fmt.Errorf("%w: ServiceChecks: caspaxos runs no health checks; a session ends by its TTL or a destroy", errBadRequest)
	}
	if len(checks) > 0 {
		s.Checks = []string{"serfHealth"}
	}
	return s, ttl, nil
}

// parseLockDelay reads a LockDelay as Consul does: a duration string, or
// a number (under 1000: seconds, else nanoseconds); at most kv.MaxLockDelay.
func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	var d time.Duration
	var s string
	var n json.Number
	switch {
	case json.Unmarshal(raw, &s) == nil:
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w: LockDelay %q is not a duration", errBadRequest, s)
		}
		d = v
	case json.Unmarshal(raw, &n) == nil:
		v, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: LockDelay %s is not a whole number", errBadRequest, n)
		}
		d = time.Duration(v)
		if v >= 0 && v < 1000 {
			d = time.Duration(v) * time.Second
		}
	default:
		return 0, fmt.Errorf("%w: LockDelay %s is neither a duration nor a number", errBadRequest, raw)
	}
	if d < 0 || d > kv.MaxLockDelay {
		return 0, fmt.Errorf("%w: LockDelay %v is not within 0..%v", errBadRequest, d, kv.MaxLockDelay)
	}
	return d, nil
}

// system runs op for the front end itself (the session table, leases, a
// settle): admitted, with no permission check, reserved keys allowed.
func (c *call) system(op kv.Op) (protocol.State, error) {
	var st protocol.State
	err := c.admitted(func(ctx context.Context) error {
		var err error
		st, err = c.s.b.Do(ctx, op)
		return err
	})
	return st, err
}

// readSessions reads the session table and the state it was read at.
func (c *call) readSessions() (sessionTable, protocol.State, error) {
	st, err := c.system(kv.Op{Kind: kv.OpGet, Key: sessionsKey})
	if err != nil {
		return sessionTable{}, st, err
	}
	t := sessionTable{Sessions: map[string]storedSession{}}
	if st.Exists() {
		if err := json.Unmarshal(st.Value, &t); err != nil {
			return t, st, fmt.Errorf("caspaxos/consulapi: the session table is unreadable: %w", err)
		}
		if t.Sessions == nil {
			t.Sessions = map[string]storedSession{}
		}
	}
	return t, st, nil
}

// changeSessions applies fn to the session table by compare-and-swap,
// from the read again on a conflict.
func (c *call) changeSessions(fn func(*sessionTable) error) error {
	for range c.s.cfg.MaxTxnAttempts {
		t, st, err := c.readSessions()
		if err != nil {
			return err
		}
		if err := fn(&t); err != nil {
			return err
		}
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		_, err = c.system(kv.Op{Kind: kv.OpCompareAndSwap, Key: sessionsKey, Version: kv.CurrentVersion(st), Value: b})
		if !errors.Is(err, kv.ErrVersionMismatch) {
			return err
		}
	}
	return fmt.Errorf("%w: the session table changed under %d attempts in a row; retry", errContended, c.s.cfg.MaxTxnAttempts)
}

// leaseLive reads lease id: whether it is live, and the lease (its
// expiry's time for a lock delay) when it is readable.
func (c *call) leaseLive(id uint64) (bool, kv.Lease, error) {
	st, err := c.system(kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(id)})
	if err != nil {
		return false, kv.Lease{}, err
	}
	l, err := kv.LeaseOf(st)
	if err != nil {
		return false, kv.Lease{}, nil // absent or unreadable: ended
	}
	return l.State == kv.LeaseLive, l, nil
}

// sessionPaths are the session endpoints: the method and whether the path
// ends in an ID (or a node).
var sessionPaths = map[string]struct {
	method string
	arg    bool
}{
	"create": {http.MethodPut, false}, "renew": {http.MethodPut, true}, "destroy": {http.MethodPut, true},
	"info": {http.MethodGet, true}, "node": {http.MethodGet, true}, "list": {http.MethodGet, false},
}

// sessions serves /v1/session/{create,renew,destroy,info,node,list}.
func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	op, arg, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/session/"), "/")
	p, ok := sessionPaths[op]
	method := r.Method
	if method == http.MethodPost {
		method = http.MethodPut
	}
	switch {
	case !ok:
		s.notServed(w, r)
		return
	case method != p.method:
		writeError(w, fmt.Errorf("%w: %s /v1/session/%s: use %s", errBadRequest, r.Method, op, p.method))
		return
	case p.arg != (arg != ""):
		writeError(w, fmt.Errorf("%w: /v1/session/%s takes %s", errBadRequest, op, map[bool]string{true: "an argument", false: "no argument"}[p.arg]))
		return
	}
	if err := checkParams(r.URL.Query(), []string{"index", "wait", "consistent", "stale", "cached"}); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.begin(r)
	if err != nil {
		writeError(w, err)
		return
	}
	switch op {
	case "create":
		c.createSession(w, r)
	case "renew":
		c.renewSession(w, arg)
	case "destroy":
		c.destroySession(w, arg)
	default:
		c.listSessions(w, op, arg)
	}
}

// createSession grants the session's lease, under a fresh random ID, then
// records the session in the table.
func (c *call) createSession(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		writeError(w, fmt.Errorf("%w: reading the body: %v", errBadRequest, err))
		return
	}
	sess, ttl, err := parseSessionRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if sess.Node == "" {
		sess.Node = c.s.cfg.NodeName
	}
	sess.User = c.p.User
	var id uint64
	for id == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			writeError(w, err)
			return
		}
		id = binary.BigEndian.Uint64(b[:])
		st, err := c.system(kv.Op{Kind: kv.OpLeaseGrant, Key: kv.LeaseKey(id), Delta: ttl.Milliseconds(), Flags: kv.LeaseKeysKept})
		switch {
		case errors.Is(err, kv.ErrLeaseExists):
			id = 0 // taken: draw again
		case err != nil:
			writeError(w, err)
			return
		default:
			sess.CreateIndex = st.Version
		}
	}
	err = c.changeSessions(func(t *sessionTable) error {
		if len(t.Sessions) >= c.s.cfg.MaxSessions {
			c.pruneSessions(t)
		}
		if len(t.Sessions) >= c.s.cfg.MaxSessions {
			return fmt.Errorf("%w: %d sessions are live, the most caspaxos keeps; destroy some", kv.ErrOverloaded, len(t.Sessions))
		}
		t.Sessions[strconv.FormatUint(id, 16)] = sess
		return nil
	})
	if err != nil {
		_, _ = c.system(kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(id)})
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{ ID string }{sessionID(id)})
}

// pruneSessions drops the sessions whose lease has ended.
func (c *call) pruneSessions(t *sessionTable) {
	for k := range t.Sessions {
		id, err := strconv.ParseUint(k, 16, 64)
		if err != nil {
			delete(t.Sessions, k)
			continue
		}
		if live, _, err := c.leaseLive(id); err == nil && !live {
			delete(t.Sessions, k)
		}
	}
}

// ownSession checks that the caller may renew or destroy session id:
// its creator, or an admin.
func (c *call) ownSession(id uint64) (storedSession, bool, error) {
	t, _, err := c.readSessions()
	if err != nil {
		return storedSession{}, false, err
	}
	sess, ok := t.Sessions[strconv.FormatUint(id, 16)]
	if ok && sess.User != c.p.User {
		if err := c.allowed(auth.Access{Perm: auth.PermAdmin}); err != nil {
			return sess, ok, err
		}
	}
	return sess, ok, nil
}

// renewSession keeps the session's lease alive: [session], or 404 once it
// has ended.
func (c *call) renewSession(w http.ResponseWriter, arg string) {
	id, err := parseSessionID(arg)
	if err != nil {
		writeError(w, err)
		return
	}
	sess, known, err := c.ownSession(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if known {
		// A lease that is no session (one of the client port's) is not
		// renewed here.
		_, err = c.system(kv.Op{Kind: kv.OpLeaseKeepAlive, Key: kv.LeaseKey(id)})
	}
	if errors.Is(err, kv.ErrLeaseNotFound) || !known {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, "Session id '%s' not found", arg)
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, []sessionJSON{sess.view(id)})
}

// destroySession revokes the session's lease. The table keeps its entry
// (its behaviour tells how its keys are settled, at their next read, with
// no lock delay) until it fills and drops the ended sessions.
func (c *call) destroySession(w http.ResponseWriter, arg string) {
	id, err := parseSessionID(arg)
	if err != nil {
		writeError(w, err)
		return
	}
	_, known, err := c.ownSession(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if !known {
		writeJSON(w, http.StatusOK, true) // no such session: nothing to destroy, as Consul
		return
	}
	if _, err := c.system(kv.Op{Kind: kv.OpLeaseRevoke, Key: kv.LeaseKey(id)}); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, true)
}

// listSessions serves info (one session), node (a node's) and list (all):
// the live sessions of the table. It answers at once: blocking queries on
// sessions are not served (the index is the table's version).
func (c *call) listSessions(w http.ResponseWriter, op, arg string) {
	var want uint64
	if op == "info" {
		id, err := parseSessionID(arg)
		if err != nil {
			writeError(w, err)
			return
		}
		want = id
	}
	t, st, err := c.readSessions()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []sessionJSON{}
	for k, sess := range t.Sessions {
		id, err := strconv.ParseUint(k, 16, 64)
		if err != nil || (want != 0 && id != want) || (op == "node" && sess.Node != arg) {
			continue
		}
		live, _, err := c.leaseLive(id)
		if err != nil {
			writeError(w, err)
			return
		}
		if live {
			out = append(out, sess.view(id))
		}
	}
	slices.SortFunc(out, func(a, b sessionJSON) int { return strings.Compare(a.ID, b.ID) })
	setIndex(w, st.Version)
	writeJSON(w, http.StatusOK, out)
}
