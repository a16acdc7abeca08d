package membership

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/caspaxos/caspaxos/storage"
)

// Record is what a node's data directory says of its past membership,
// beside its state: WAS-MEMBER exists once the node has been listed in a
// membership it used (a membership that no longer lists it then means a
// removal, where for a node being added it only means not yet); REMOVED
// exists once a peer told this node that it was removed (a newer
// membership that does not list it: the node's own state still lists it,
// since the removal happened while it was down).
type Record struct {
	dir    *storage.Dir
	member atomic.Bool // WAS-MEMBER exists
}

// NewRecord returns the record in the data directory dir.
func NewRecord(dir *storage.Dir) *Record { return &Record{dir: dir} }

// WasMember reports whether the node has been a member (WAS-MEMBER).
func (r *Record) WasMember() (bool, error) {
	if r.member.Load() {
		return true, nil
	}
	b, err := r.dir.ReadState(storage.WasMemberFile)
	if b != nil {
		r.member.Store(true)
	}
	return b != nil, err
}

// MarkMember records durably that the node has been a member. A membership
// that lists the node is marked before it is used (Keeper's persist): a
// removal that follows at once is then still told from an add that has
// not reached the node yet.
func (r *Record) MarkMember() error {
	if r.member.Load() {
		return nil
	}
	if err := r.dir.WriteState(storage.WasMemberFile, []byte("1\n")); err != nil {
		return err
	}
	r.member.Store(true)
	return nil
}

// Check refuses to start a node that was removed: one that a peer said was
// removed (REMOVED), or that has been a member, is not listed any more and
// has no change of its own to finish. It records that the node is a member
// when it is one. Call it once the controller resumed its change.
func (s *Standing) Check() error {
	name := s.cfg.Self.Name
	if b, err := s.record.dir.ReadState(storage.RemovedFile); err != nil {
		return err
	} else if b != nil {
		return fmt.Errorf("caspaxos/membership: node %s was removed from the cluster while it was down (a peer uses membership version %s, which does not list it); to add it again, start it with --join on an empty data directory and add it",
			name, strings.TrimSpace(string(b)))
	}
	m := s.keeper.Membership()
	if s.lists(m) {
		return s.record.MarkMember()
	}
	was, err := s.record.WasMember()
	if err != nil || !was || s.changing() {
		return err
	}
	return fmt.Errorf("caspaxos/membership: node %s was removed from the cluster (membership version %d); to add it again, start it with --join on an empty data directory and add it",
		name, m.Version())
}

// probeRemoved asks the other members of the membership this node uses for
// theirs. It returns the version of a newer one that does not list this
// node and whose change is over, or 0 (removedBy).
func (s *Standing) probeRemoved(ctx context.Context) uint64 {
	m := s.keeper.Membership()
	for _, n := range m.Nodes {
		if n.ID == s.cfg.Self.ID {
			continue
		}
		info, ok := s.memberInfo(ctx, n)
		if ok && removedBy(m, info) {
			return info.Version
		}
	}
	return 0
}

// removedBy reports whether a peer's answer info says that the node using
// m was removed: its membership is newer, does not list the node, and its
// change is over. A peer in the middle of a change is not asked to decide
// (the change may still reach this node, which then stops by the rule of
// the watch tick), nor is one that predates the question (its answer has
// no CallerListed).
func removedBy(m Membership, info PeerInfo) bool {
	return info.Version > m.Version() && info.CallerListed != nil && !*info.CallerListed && !info.Changing
}

// memberInfo asks member m for its Info (naming this node as the caller);
// ok is false if it did not answer within InfoTimeout, or if another node
// (another incarnation) answers at its address. Over TLS, the answer
// comes from a node whose certificate names m (StandingPeers); the ID it
// reports is checked as well.
func (s *Standing) memberInfo(ctx context.Context, m Member) (PeerInfo, bool) {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.InfoTimeout)
	defer cancel()
	info, err := s.peers.Info(ictx, m, s.cfg.Self.ID, "")
	return info, err == nil && info.ID == m.ID
}
