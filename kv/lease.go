package kv

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Leases (COORDINATION.md, "Leases"; docs/leases.md).
//
// A lease is one register, under LeaseKey(id): its TTL, the time of its
// last renewal, and its state. Grant, keep-alive, revoke and expiry are
// change functions of that register. Each takes the proposer's time,
// fixed before the change runs (a change may run more than once, so it
// never reads a clock). Expiry is a committed change like the others,
// which any node may propose: a lease is expired once a proposer whose
// time is past renewed + TTL + the clock-skew bound has committed it, and
// reads never consult a clock. No node owns a lease, so no failover resets
// or revokes one.
//
// The guarantee: with node clocks that differ by at most the skew bound
// (and do not drift), a lease never expires before its TTL has passed
// since its last keep-alive (or its grant) was sent. Expire's rule,
// now > renewed + ttl + skew, where renewed is the renewing proposer's
// clock and now the expiring one's, gives real time between the two
// changes above ttl.

// Lease bounds.
const (
	// MinLeaseTTL and MaxLeaseTTL bound a lease's TTL.
	MinLeaseTTL = 100 * time.Millisecond
	MaxLeaseTTL = 24 * time.Hour
	// leaseFormat is the first byte of a lease's value.
	leaseFormat byte = 1
	// leasePrefix begins every lease's key, in the cluster's reserved space.
	leasePrefix = ReservedPrefix + "lease/"
)

// LeaseState is a lease's state.
type LeaseState uint8

const (
	LeaseLive LeaseState = iota + 1
	LeaseExpired
	LeaseRevoked
)

func (s LeaseState) String() string {
	switch s {
	case LeaseLive:
		return "live"
	case LeaseExpired:
		return "expired"
	case LeaseRevoked:
		return "revoked"
	}
	return "LeaseState(" + strconv.Itoa(int(s)) + ")"
}

// Lease is a lease register's value.
type Lease struct {
	TTLMillis     int64
	RenewedMillis int64
	State         LeaseState
}

var (
	// ErrLeaseNotFound: no such lease, or it expired or was revoked.
	ErrLeaseNotFound = errors.New("caspaxos: lease not found, expired or revoked")
	// ErrLeaseExists: a grant of an ID that is, or was, a lease.
	ErrLeaseExists = errors.New("caspaxos: lease already exists")
	// ErrLeaseNotExpired: an expiry proposed before the lease may expire.
	ErrLeaseNotExpired = errors.New("caspaxos: lease has not expired")
	// ErrBadLease: a lease's stored value or a request's TTL is invalid.
	ErrBadLease = errors.New("caspaxos: bad lease")
)

// LeaseKey is the register key of lease id.
func LeaseKey(id uint64) string { return leasePrefix + strconv.FormatUint(id, 16) }

// LeasePrefix begins every lease's key (a scan of it finds the leases).
const LeasePrefix = leasePrefix

// NewLeaseID picks a random lease ID for a grant that names none: non-zero,
// and below 2^63, so that etcd's clients, whose IDs are int64, see it
// positive.
func NewLeaseID() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:])>>1 | 1, nil
}

// IsLeaseKey reports whether key is a lease's.
func IsLeaseKey(key string) bool {
	_, ok := LeaseIDOf(key)
	return ok
}

// LeaseIDOf returns the ID of the lease whose key is key, if it is one.
func LeaseIDOf(key string) (uint64, bool) {
	id, ok := strings.CutPrefix(key, leasePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(id, 16, 64)
	return n, err == nil && LeaseKey(n) == key
}

// EncodeLease returns l's value: the format byte (1), the TTL (uvarint,
// ms), the renewal time (varint, ms since the epoch), the state (1 byte).
func EncodeLease(l Lease) []byte {
	b := []byte{leaseFormat}
	b = binary.AppendUvarint(b, uint64(l.TTLMillis))
	b = binary.AppendVarint(b, l.RenewedMillis)
	return append(b, byte(l.State))
}

// DecodeLease decodes a lease's value; it refuses an unknown format, a TTL
// out of bounds, an unknown state and trailing bytes (ErrBadLease).
func DecodeLease(b []byte) (Lease, error) {
	if len(b) == 0 || b[0] != leaseFormat {
		return Lease{}, fmt.Errorf("%w: unknown format", ErrBadLease)
	}
	b = b[1:]
	ttl, n := binary.Uvarint(b)
	if n <= 0 {
		return Lease{}, fmt.Errorf("%w: truncated TTL", ErrBadLease)
	}
	b = b[n:]
	renewed, n := binary.Varint(b)
	if n <= 0 {
		return Lease{}, fmt.Errorf("%w: truncated renewal time", ErrBadLease)
	}
	b = b[n:]
	if len(b) != 1 {
		return Lease{}, fmt.Errorf("%w: %d bytes where the state is", ErrBadLease, len(b))
	}
	l := Lease{TTLMillis: int64(ttl), RenewedMillis: renewed, State: LeaseState(b[0])}
	// Any TTL of at least a millisecond reads (the simulator's are short);
	// CheckLeaseTTL bounds what a client may ask for.
	if ttl < 1 || ttl > uint64(MaxLeaseTTL.Milliseconds()) {
		return Lease{}, fmt.Errorf("%w: TTL %dms out of bounds", ErrBadLease, ttl)
	}
	if l.State < LeaseLive || l.State > LeaseRevoked {
		return Lease{}, fmt.Errorf("%w: unknown state %d", ErrBadLease, l.State)
	}
	return l, nil
}

// CheckLeaseTTL refuses a TTL out of bounds.
func CheckLeaseTTL(ttl time.Duration) error {
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL || ttl%time.Millisecond != 0 {
		return fmt.Errorf("%w: TTL %v is not a whole number of milliseconds within %v..%v", ErrBadLease, ttl, MinLeaseTTL, MaxLeaseTTL)
	}
	return nil
}

// LeaseOf reads a lease register's state: the lease, or ErrLeaseNotFound
// when there is none (absent, or deleted).
func LeaseOf(s protocol.State) (Lease, error) {
	if !s.Exists() {
		return Lease{}, ErrLeaseNotFound
	}
	return DecodeLease(s.Value)
}

// LeaseKeysKept, in a lease register's Attrs.Flags (set by its grant,
// OpLeaseGrant's Flags), leaves the keys attached to the lease to the
// front end that granted it when the lease ends: the reaper never deletes
// them. Consul's sessions settle their keys themselves, after the lock
// delay, by releasing or deleting them as the session's behaviour says
// (server/consulapi).
const LeaseKeysKept uint64 = 1

// LeaseGrant creates a live lease of ttl, renewed at nowMillis, with
// flags (LeaseKeysKept or 0) in its register's attributes, which its
// later changes keep. An ID whose register was ever written, live,
// expired or revoked, is refused (ErrLeaseExists): an ID names one lease's
// life only, so that a key still attached to a lease that ended (its
// delete not yet committed) is never adopted by a new lease of the same ID
// (DeleteAttached).
func LeaseGrant(ttlMillis, nowMillis int64, flags uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if cur.Version > 0 {
			return protocol.Write{}, ErrLeaseExists
		}
		w := protocol.Write{Kind: protocol.WriteSet, Value: EncodeLease(Lease{TTLMillis: ttlMillis, RenewedMillis: nowMillis, State: LeaseLive})}
		if flags != 0 {
			w.Attrs = &protocol.Attrs{Flags: flags}
		}
		return w, nil
	}
}

// LeaseKeepAlive renews a live lease at nowMillis. A renewal never moves
// the renewal time back (a proposer with a slower clock keeps the later
// one).
func LeaseKeepAlive(nowMillis int64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LeaseOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if l.State != LeaseLive {
			return protocol.Write{}, ErrLeaseNotFound
		}
		l.RenewedMillis = max(l.RenewedMillis, nowMillis)
		return protocol.Write{Kind: protocol.WriteSet, Value: EncodeLease(l)}, nil
	}
}

// LeaseRevoke ends a live lease now.
func LeaseRevoke() protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LeaseOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if l.State != LeaseLive {
			return protocol.Write{}, ErrLeaseNotFound
		}
		l.State = LeaseRevoked
		return protocol.Write{Kind: protocol.WriteSet, Value: EncodeLease(l)}, nil
	}
}

// LeaseExpirable is expiry's rule: at the proposer's time nowMillis, a
// live lease may be expired once nowMillis > renewed + ttl + skew.
func LeaseExpirable(l Lease, nowMillis, skewMillis int64) bool {
	return l.State == LeaseLive && nowMillis > l.RenewedMillis+l.TTLMillis+skewMillis
}

// LeaseExpire commits the expiry of a lease that LeaseExpirable allows at
// nowMillis, fixed by the proposer before the change runs; otherwise it
// changes nothing (ErrLeaseNotExpired).
func LeaseExpire(nowMillis, skewMillis int64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		l, err := LeaseOf(cur)
		if err != nil {
			return protocol.Write{}, err
		}
		if !LeaseExpirable(l, nowMillis, skewMillis) {
			return protocol.Write{}, ErrLeaseNotExpired
		}
		l.State = LeaseExpired
		return protocol.Write{Kind: protocol.WriteSet, Value: EncodeLease(l)}, nil
	}
}

// LeaseIsLive reads a lease register's state as a write attaching a key to
// the lease checks it: nil for a live lease, ErrLeaseNotFound otherwise.
func LeaseIsLive(s protocol.State) error {
	l, err := LeaseOf(s)
	if err != nil {
		return err
	}
	if l.State != LeaseLive {
		return ErrLeaseNotFound
	}
	return nil
}

// DeleteAttached is how a key attached to a lease ends with it: it
// deletes the key if the key is attached to lease, and otherwise keeps it
// as it is. The guard is what makes the reaper's sweep safe: the sweep
// found the key attached to lease in one acceptor's store, which may be
// stale, and by the time the change runs the key may have been put again
// without the lease, or with another; only the committed state decides.
func DeleteAttached(lease uint64) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		if !cur.Exists() || cur.Lease != lease {
			return protocol.Write{}, nil
		}
		return protocol.Write{Kind: protocol.WriteDelete}, nil
	}
}
