package consulapi

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// lockChange runs a PUT with ?acquire or ?release (session.go): whether
// it applied. An acquire needs a live session and a key that is free or
// held by that session already (a key held by an ended session is
// settled first); a release, a key the session holds.
func (c *call) lockChange(key string, value []byte, q kvQuery) (bool, error) {
	name := q.acquire
	if name == "" {
		name = q.release
	}
	id, err := parseSessionID(name)
	if err != nil {
		return false, err
	}
	if q.release != "" {
		_, err := c.do(kv.Op{Kind: kv.OpKeyRelease, Key: key, Lease: id, Value: value, Flags: q.flags})
		if errors.Is(err, kv.ErrKeyNotHeld) {
			return false, nil
		}
		return err == nil, err
	}
	t, _, err := c.readSessions()
	if err != nil {
		return false, err
	}
	live, _, err := c.leaseLive(id)
	switch {
	case err != nil:
		return false, err
	case !live || t.Sessions[strconv.FormatUint(id, 16)].Behavior == "":
		return false, fmt.Errorf("%w: invalid session %q: it has ended (or never was)", errBadRequest, name)
	}
	st, err := c.do(kv.Op{Kind: kv.OpGet, Key: key})
	if err != nil {
		return false, err
	}
	if _, err := c.settle(key, st); err != nil {
		return false, err
	}
	_, err = c.do(kv.Op{Kind: kv.OpKeyAcquire, Key: key, Lease: id, Value: value, Flags: q.flags})
	if errors.Is(err, kv.ErrKeyHeld) {
		return false, nil
	}
	return err == nil, err
}

// settle returns key's state st, unless an ended session holds it: then,
// once that session's lock delay has passed since its lease expired (no
// delay after a destroy), it releases the key (Behavior release) or
// deletes it (delete) on the version read, and returns the state after;
// a key changed meanwhile is read again. A key attached to a lease that
// is not a session's (no kv.LeaseKeysKept: a put with a lease, on the
// client port or etcd's) is left as it is: its lease's end deletes it,
// by the lease reaper (docs/leases.md).
func (c *call) settle(key string, st protocol.State) (protocol.State, error) {
	if !st.Exists() || st.Lease == 0 {
		return st, nil
	}
	ls, err := c.system(kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(st.Lease)})
	if err != nil || ls.Flags&kv.LeaseKeysKept == 0 {
		return st, err
	}
	l, lerr := kv.LeaseOf(ls)
	if lerr == nil && l.State == kv.LeaseLive {
		return st, nil
	}
	t, _, err := c.readSessions()
	if err != nil {
		return st, err
	}
	sess, ok := t.Sessions[strconv.FormatUint(st.Lease, 16)]
	if !ok {
		// A session pruned from the table: released, with Consul's
		// default delay.
		sess = storedSession{Behavior: "release", LockDelay: DefaultLockDelay}
	}
	if l.State == kv.LeaseExpired {
		expired := time.UnixMilli(l.RenewedMillis + l.TTLMillis)
		if c.s.cfg.Now().Before(expired.Add(sess.LockDelay)) {
			return st, nil // the lock delay: held until it passes
		}
	}
	op := kv.Op{Kind: kv.OpKeyRelease, Key: key, Lease: st.Lease, Version: st.Version, Value: st.Value, Flags: st.Flags}
	if sess.Behavior == "delete" {
		op = kv.Op{Kind: kv.OpDelete, Key: key, Version: st.Version}
	}
	after, err := c.system(op)
	switch {
	case errors.Is(err, kv.ErrVersionMismatch), errors.Is(err, kv.ErrKeyNotHeld), errors.Is(err, kv.ErrNotFound):
		return c.system(kv.Op{Kind: kv.OpGet, Key: key}) // changed since: that is the state now
	case err != nil:
		return st, err
	}
	return after, nil
}
