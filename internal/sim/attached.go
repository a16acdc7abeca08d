package sim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Keys attached to leases in the simulator (kv.PutAttached,
// kv.DeleteAttached; docs/leases.md).
//
// Each lease holder has a key of its own that it now and then puts
// attached to the lease it holds, and now and then puts again without a
// lease. The reaper actor keeps a stale index of those keys, as an
// acceptor that missed later writes would: it learns a key's lease from
// the chosen states that attach it, and never forgets it on a detaching
// put. For each key its index attaches to a lease whose end (expired) was
// chosen, it proposes kv.DeleteAttached.
//
// Checked: a chosen tombstone of such a key follows (the chosen state one
// version below) a state attached to a lease whose end was chosen before.
// Variant LeaseUnguardedDelete proposes a plain delete instead, which a
// detaching put turns into the deletion of a key attached to no lease.

// attachedState is the reaper's stale index and the chosen states the
// check needs.
type attachedState struct {
	index  map[string]string                    // attached key -> lease key, as the reaper last learnt it
	ended  map[string]bool                      // lease keys whose end was chosen
	chosen map[string]map[uint64]protocol.State // attached key -> version -> chosen state
}

// attachedPrefix begins the attached keys: in the reserved space, like
// the leases' keys, so that listings and the clients' model (which know
// nothing of the lease actors' writes) leave them out.
const attachedPrefix = kv.ReservedPrefix + "attached/"

// attachedKeyOf is holder i's attached key.
func attachedKeyOf(i int) string { return attachedPrefix + strconv.Itoa(i) }

func isAttachedKey(key string) bool { return strings.HasPrefix(key, attachedPrefix) }

// leaseIDOf is the ID of a lease's key.
func leaseIDOf(key string) uint64 {
	id, _ := kv.LeaseIDOf(key)
	return id
}

// attachOps proposes, for a holder that holds its lease, a put of its key
// attached to the lease (or, one time in three, a put without one).
func (s *sim) attachOps(n *node, h *leaseHolder) {
	l := &s.lease
	if l.rng.IntN(2) == 0 {
		return
	}
	lease := leaseIDOf(h.key)
	if l.rng.IntN(3) == 0 {
		lease = 0
	}
	value := []byte(fmt.Sprint(s.now))
	s.leasePropose(n, leaseOp{kind: leaseAttach, holder: -1, key: h.attached}, kv.PutAttached(value, lease))
}

// sweepAttached is the reaper's sweep at n: a delete of every key its
// index attaches to a lease whose end was chosen.
func (s *sim) sweepAttached(n *node) {
	a := &s.lease.attached
	for _, h := range s.lease.holders {
		leaseKey, ok := a.index[h.attached]
		if !ok || !a.ended[leaseKey] {
			continue
		}
		ch := kv.DeleteAttached(leaseIDOf(leaseKey))
		if s.opts.Variant.LeaseUnguardedDelete {
			ch = kv.Delete(0)
		}
		s.leasePropose(n, leaseOp{kind: leaseSweep, holder: -1, key: h.attached}, ch)
	}
}

// checkAttached checks a chosen state of an attached key, and learns the
// ends of leases.
func (s *sim) checkAttached(key string, st protocol.State) {
	a := &s.lease.attached
	if kv.IsLeaseKey(key) {
		if l, err := kv.LeaseOf(st); err == nil && l.State != kv.LeaseLive {
			a.ended[key] = true
		}
		return
	}
	if !isAttachedKey(key) {
		return
	}
	if st.Lease != 0 {
		a.index[key] = kv.LeaseKey(st.Lease)
	}
	byVersion := a.chosen[key]
	if byVersion == nil {
		byVersion = make(map[uint64]protocol.State)
		a.chosen[key] = byVersion
	}
	byVersion[st.Version] = st
	for v := range byVersion {
		if v+2 < st.Version {
			delete(byVersion, v)
		}
	}
	if !st.Deleted || st.Version == 0 {
		return
	}
	pred, ok := byVersion[st.Version-1]
	if !ok || !pred.Exists() {
		return
	}
	if pred.Lease == 0 || !a.ended[kv.LeaseKey(pred.Lease)] {
		s.fail("attached keys: %q deleted at version %d, after version %d attached to lease %d, whose end was not chosen (0: no lease)",
			key, st.Version, pred.Version, pred.Lease)
		return
	}
	s.stats.AttachedDeletes++
}
