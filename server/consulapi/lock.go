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
// settled first); a release, a live session and a key it holds.
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
		// An ended session holds nothing any more, as Consul clears its
		// keys' Session at its end: its release is refused, so that it
		// cannot cut the lock delay short.
		if live, _, err := c.leaseLive(id); err != nil || !live {
			return false, err
		}
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
	if _, _, err := c.settle(key, st); err != nil {
		return false, err
	}
	_, err = c.do(kv.Op{Kind: kv.OpKeyAcquire, Key: key, Lease: id, Value: value, Flags: q.flags})
	if errors.Is(err, kv.ErrKeyHeld) {
		return false, nil
	}
	return err == nil, err
}

// holding is what settle learned of a key's stored holder
// (protocol.State.Attrs.Lease) on the state it returns.
type holding struct {
	// ended: the holder's lease is no longer live (expired, revoked or
	// absent). Consul clears a key's Session when it invalidates the
	// session, so the key is shown free (view), while the stored holder,
	// until the key is settled, still refuses every acquire: the lock
	// delay.
	ended bool
	// delayEnd, for an ended session's key that the lock delay keeps
	// unsettled: when that delay ends (zero otherwise).
	delayEnd time.Time
	// leaseVersion is the version of the holder's lease register as read
	// (where a watch of it starts).
	leaseVersion uint64
}

// view is st as Consul shows it: no holder once the holder's lease has
// ended.
func (h holding) view(st protocol.State) protocol.State {
	if h.ended {
		st.Lease = 0
	}
	return st
}

// settle returns key's state st, unless an ended session holds it: then,
// once that session's lock delay has passed since its lease expired (no
// delay after a destroy), it releases the key (Behavior release) or
// deletes it (delete) on the version read, and returns the state after;
// a key changed meanwhile is read again and settled in turn. A key
// attached to a lease that is not a session's (no kv.LeaseKeysKept: a put
// with a lease, on the client port or etcd's) is left as it is: its
// lease's end deletes it, by the lease reaper (docs/leases.md). The
// holding says what it learned of the holder of the state returned.
func (c *call) settle(key string, st protocol.State) (protocol.State, holding, error) {
	for range c.s.cfg.MaxTxnAttempts {
		h, op, err := c.holder(key, st)
		if err != nil || op == nil {
			return st, h, err
		}
		after, err := c.system(*op)
		switch {
		case errors.Is(err, kv.ErrVersionMismatch), errors.Is(err, kv.ErrKeyNotHeld), errors.Is(err, kv.ErrNotFound):
			// Changed since: that is the state now.
			if st, err = c.system(kv.Op{Kind: kv.OpGet, Key: key}); err != nil {
				return st, holding{}, err
			}
			continue
		case err != nil:
			return st, h, err
		}
		return after, holding{}, nil
	}
	return st, holding{}, fmt.Errorf("%w: key %q changed under %d attempts in a row to settle it; retry", errContended, key, c.s.cfg.MaxTxnAttempts)
}

// holder reads the lease that holds key's state st: what it is, and the
// settling op due (nil: none, or not yet).
func (c *call) holder(key string, st protocol.State) (holding, *kv.Op, error) {
	if !st.Exists() || st.Lease == 0 {
		return holding{}, nil, nil
	}
	ls, err := c.system(kv.Op{Kind: kv.OpGet, Key: kv.LeaseKey(st.Lease)})
	if err != nil {
		return holding{}, nil, err
	}
	h := holding{leaseVersion: ls.Version}
	l, lerr := kv.LeaseOf(ls)
	if lerr == nil && l.State == kv.LeaseLive {
		return h, nil, nil
	}
	h.ended = true
	if ls.Flags&kv.LeaseKeysKept == 0 {
		return h, nil, nil // the reaper's
	}
	t, _, err := c.readSessions()
	if err != nil {
		return h, nil, err
	}
	sess, ok := t.Sessions[strconv.FormatUint(st.Lease, 16)]
	if !ok {
		// A session pruned from the table: released, with Consul's
		// default delay.
		sess = storedSession{Behavior: "release", LockDelay: kv.DefaultLockDelay}
	}
	if l.State == kv.LeaseExpired {
		expired := time.UnixMilli(l.RenewedMillis + l.TTLMillis)
		if end := expired.Add(sess.LockDelay); c.s.cfg.Now().Before(end) {
			h.delayEnd = end
			return h, nil, nil // the lock delay: held until it passes
		}
	}
	op := kv.Op{Kind: kv.OpKeyRelease, Key: key, Lease: st.Lease, Version: st.Version, Value: st.Value, Flags: st.Flags}
	if sess.Behavior == "delete" {
		op = kv.Op{Kind: kv.OpDelete, Key: key, Version: st.Version}
	}
	return h, &op, nil
}
