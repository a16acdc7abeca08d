package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Membership change on a networked node (PROTOCOL.md §8; the steps are in
// server/membership). The node keeps its membership (MEMBERSHIP), its
// controller's change (MEMBERSHIP-CHANGE) and whether it has been a member
// (WAS-MEMBER) or was removed (REMOVED) in state files of its data
// directory, next to the store: storage.Dir reads and writes them, and the
// package documentation of storage draws the directory, every file in it
// and who writes it when. Once present, MEMBERSHIP wins over --cluster,
// which only bootstraps a cluster. A damaged state file is an error at
// start.
//
// WAS-MEMBER exists once the node has been listed in a membership it used:
// a membership that no longer lists it then means a removal, where for a
// node being added it only means not yet. REMOVED exists once a peer told
// this node that it was removed (a newer membership that does not list
// it): the node's own state still lists it, since the removal happened
// while it was down.
//
// A node's ID is part of every ballot it makes, and a ballot must never be
// used twice (PROTOCOL.md §2). The proposer persists its ballot ceiling in
// its data directory, so a node that lost its disk and came back under the
// same ID would start counting again at 0 and could reuse a ballot of its
// former life with another value, and its acceptor would have forgotten
// what it promised and accepted. So a node started with --join takes an
// ID of its name and a fresh incarnation of its data directory: a new disk
// is a new node. Nodes of the bootstrap cluster keep the ID of their name,
// and never serve on a directory the cluster does not know them by
// (identity.go).

// wasMember reports whether the node has been a member (WAS-MEMBER).
func (d *Daemon) wasMember() (bool, error) {
	if d.member.Load() {
		return true, nil
	}
	b, err := d.dir.ReadState(storage.WasMemberFile)
	if b != nil {
		d.member.Store(true)
	}
	return b != nil, err
}

// markMember records durably that the node has been a member.
func (d *Daemon) markMember() error {
	if d.member.Load() {
		return nil
	}
	if err := d.dir.WriteState(storage.WasMemberFile, []byte("1\n")); err != nil {
		return err
	}
	d.member.Store(true)
	return nil
}

// loadState returns the persisted state, or the bootstrap cluster's, or
// (joining) none.
func loadState(cfg Config, dir *storage.Dir, acceptors protocol.Config) (membership.NodeState, error) {
	b, err := dir.ReadState(storage.MembershipFile)
	if err != nil || b != nil {
		var st membership.NodeState
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			return st, fmt.Errorf("caspaxos/daemon: %s: %w", storage.MembershipFile, err)
		}
		return st, nil
	}
	if cfg.Join {
		return membership.NodeState{}, nil
	}
	m := membership.Membership{Config: acceptors}
	for _, c := range cfg.Cluster {
		m.Nodes = append(m.Nodes, membership.Member{Name: c.Name, ID: NodeID(c.Name), PeerAddr: c.PeerAddr})
	}
	slices.SortFunc(m.Nodes, func(a, b membership.Member) int { return cmp.Compare(a.ID, b.ID) })
	return membership.NodeState{Membership: m}, nil
}

func (d *Daemon) saveState(st membership.NodeState) error {
	// A membership that lists this node is recorded as such before it is
	// used: a removal that follows at once is then still told from an add
	// that has not reached the node yet (see Removed).
	if d.lists(st.Membership) {
		if err := d.markMember(); err != nil {
			return err
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return d.dir.WriteState(storage.MembershipFile, b)
}

// changeStore is the controller's membership.ChangeStore in the data directory.
type changeStore struct{ dir *storage.Dir }

func (c changeStore) LoadChange() (*membership.Change, error) {
	b, err := c.dir.ReadState(storage.MembershipChangeFile)
	if err != nil || b == nil {
		return nil, err
	}
	var ch membership.Change
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, fmt.Errorf("caspaxos/daemon: %s: %w", storage.MembershipChangeFile, err)
	}
	return &ch, nil
}

func (c changeStore) SaveChange(ch *membership.Change) error {
	if ch == nil {
		return c.dir.RemoveState(storage.MembershipChangeFile)
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	return c.dir.WriteState(storage.MembershipChangeFile, b)
}

// adminServer serves the Admin service on the peer address.
type adminServer struct {
	peerpb.UnimplementedAdminServer
	d *Daemon
}

func (a adminServer) Info(_ context.Context, r *peerpb.InfoRequest) (*peerpb.InfoReply, error) {
	st := a.d.members.State()
	out := &peerpb.InfoReply{Name: a.d.cfg.Name, Id: uint64(a.d.id), Version: st.Membership.Version(), Changing: st.Changing,
		Incarnation: a.d.ident.Incarnation}
	if r.GetCaller() != 0 {
		caller := protocol.NodeID(r.GetCaller())
		listed := slices.ContainsFunc(st.Membership.Nodes, func(n membership.Member) bool { return n.ID == caller })
		out.CallerListed = &listed
		if listed && caller != a.d.id {
			// Recorded before the answer that may let the caller seal
			// (identity.go, step 1).
			inc, err := a.d.book.learn(caller, r.GetCallerIncarnation())
			if err != nil {
				return nil, status.Error(codes.Unavailable, err.Error())
			}
			out.CallerIncarnation = inc
		}
	}
	out.Controls, out.ChangeId = a.d.storedChange()
	return out, nil
}

// checkServing refuses, as unavailable, what a node that has not
// confirmed its data directory's identity must not do (identity.go): take
// a membership (a newer one would let it seal against members that never
// knew its incarnation: those added after the bootstrap), or list its
// keys for a catch-up (an emptied store's empty list would count among
// the old acceptors').
func (d *Daemon) checkServing() error {
	if d.serving.Load() {
		return nil
	}
	return status.Error(codes.Unavailable, d.sealWait.err().Error())
}

// storedChange says whether this node's controller stores a change, and
// its ID (controls nil: the store could not be read). It reads the store,
// not the controller's memory: a change is stored before it holds any node
// and until it freed them all, also across a restart before the controller
// resumed it.
func (d *Daemon) storedChange() (controls *bool, id string) {
	ch, err := (changeStore{d.dir}).LoadChange()
	if err != nil {
		return nil, ""
	}
	c := ch != nil
	if ch != nil {
		id = ch.ID
	}
	return &c, id
}

func (a adminServer) SetState(ctx context.Context, r *peerpb.SetStateRequest) (*peerpb.SetStateReply, error) {
	if err := a.d.checkServing(); err != nil {
		return nil, err
	}
	var st membership.NodeState
	if err := json.Unmarshal(r.GetStateJson(), &st); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := a.d.members.Set(ctx, st); err != nil {
		switch {
		case errors.Is(err, membership.ErrMembershipHeld):
			return nil, status.Error(codes.Aborted, err.Error())
		case errors.Is(err, membership.ErrMembershipOlder):
			return nil, status.Error(codes.OutOfRange, err.Error())
		case errors.Is(err, membership.ErrMembershipConflict):
			return nil, status.Error(codes.AlreadyExists, err.Error())
		}
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &peerpb.SetStateReply{}, nil
}

func (a adminServer) Settled(ctx context.Context, r *peerpb.SettledRequest) (*peerpb.SettledReply, error) {
	ok, err := a.d.members.Settled(ctx, r.GetVersion())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &peerpb.SettledReply{Settled: ok}, nil
}

func (a adminServer) Fences(context.Context, *peerpb.FencesRequest) (*peerpb.FencesReply, error) {
	f, err := a.d.store.Fences()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := &peerpb.FencesReply{Ages: map[uint64]uint64{}}
	for id, age := range f {
		out.Ages[uint64(id)] = age
	}
	return out, nil
}

func (a adminServer) SetFences(_ context.Context, r *peerpb.FencesReply) (*peerpb.SetFencesReply, error) {
	ages := map[protocol.NodeID]uint64{}
	for id, age := range r.GetAges() {
		ages[protocol.NodeID(id)] = age
	}
	if err := a.d.node.CopyFences(ages); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &peerpb.SetFencesReply{}, nil
}

func (a adminServer) ScanKeys(_ context.Context, r *peerpb.ScanKeysRequest) (*peerpb.ScanKeysReply, error) {
	if err := a.d.checkServing(); err != nil {
		return nil, err
	}
	limit := int(min(max(r.GetLimit(), 1), 1<<14))
	keys, err := membership.ScanKeys(a.d.store, string(r.GetStart()), limit)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := &peerpb.ScanKeysReply{Keys: make([][]byte, len(keys))}
	for i, k := range keys {
		out.Keys[i] = []byte(k)
	}
	return out, nil
}

// adminPeers is the controller's membership.Peers over the Admin service,
// one connection per peer address.
type adminPeers struct {
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool // by close: no new connections
}

func (p *adminPeers) client(addr string) (peerpb.AdminClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("caspaxos/daemon: the node is stopping")
	}
	if c := p.conns[addr]; c != nil {
		return peerpb.NewAdminClient(c), nil
	}
	// Wait for a (re)starting peer within the call's deadline, and retry
	// its address often: a replaced node comes back at the same address.
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
			Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}}))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return peerpb.NewAdminClient(c), nil
}

func (p *adminPeers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns, p.closed = nil, true
}

// info asks the node at addr for its name and ID, its membership version,
// and whether that membership lists caller (0: none).
func (p *adminPeers) info(ctx context.Context, addr string, caller protocol.NodeID) (*peerpb.InfoReply, error) {
	return p.infoAs(ctx, addr, caller, "")
}

// infoAs is info that also tells the node the caller's incarnation, which
// it records if it knows none (identity.go).
func (p *adminPeers) infoAs(ctx context.Context, addr string, caller protocol.NodeID, incarnation string) (*peerpb.InfoReply, error) {
	c, err := p.client(addr)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx, &peerpb.InfoRequest{Caller: uint64(caller), CallerIncarnation: incarnation})
}

func (p *adminPeers) SetState(ctx context.Context, to membership.Member, st membership.NodeState) error {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = c.SetState(ctx, &peerpb.SetStateRequest{StateJson: b})
	switch status.Code(err) {
	case codes.Aborted:
		return fmt.Errorf("%w: %v", membership.ErrMembershipHeld, err)
	case codes.OutOfRange:
		return fmt.Errorf("%w: %v", membership.ErrMembershipOlder, err)
	case codes.AlreadyExists:
		return fmt.Errorf("%w: %v", membership.ErrMembershipConflict, err)
	}
	return err
}

func (p *adminPeers) Settled(ctx context.Context, to membership.Member, version uint64) (bool, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return false, err
	}
	r, err := c.Settled(ctx, &peerpb.SettledRequest{Version: version})
	return r.GetSettled(), err
}

func (p *adminPeers) Fences(ctx context.Context, to membership.Member) (map[protocol.NodeID]uint64, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return nil, err
	}
	r, err := c.Fences(ctx, &peerpb.FencesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[protocol.NodeID]uint64{}
	for id, age := range r.GetAges() {
		out[protocol.NodeID(id)] = age
	}
	return out, nil
}

func (p *adminPeers) SetFences(ctx context.Context, to membership.Member, ages map[protocol.NodeID]uint64) error {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return err
	}
	r := &peerpb.FencesReply{Ages: map[uint64]uint64{}}
	for id, age := range ages {
		r.Ages[uint64(id)] = age
	}
	_, err = c.SetFences(ctx, r)
	return err
}

func (p *adminPeers) ScanKeys(ctx context.Context, to membership.Member, start string, limit int) ([]string, error) {
	c, err := p.client(to.PeerAddr)
	if err != nil {
		return nil, err
	}
	r, err := c.ScanKeys(ctx, &peerpb.ScanKeysRequest{Start: []byte(start), Limit: uint32(limit)})
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(r.GetKeys()))
	for i, k := range r.GetKeys() {
		keys[i] = string(k)
	}
	return keys, nil
}

// AddMember adds the node serving the peer address addr under name, and
// returns once the change is done (or ctx ends: it then goes on).
func (d *Daemon) AddMember(ctx context.Context, name, addr string) error {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := d.admin.info(ictx, addr, 0)
	cancel()
	if err != nil {
		return fmt.Errorf("caspaxos/daemon: asking the node at %s for its ID: %w", addr, err)
	}
	if info.GetName() != name {
		return fmt.Errorf("caspaxos/daemon: the node at %s is called %q, not %q", addr, info.GetName(), name)
	}
	done, err := d.ctl.Add(membership.Member{Name: name, ID: protocol.NodeID(info.GetId()), PeerAddr: addr})
	if err != nil {
		return err
	}
	return d.waitChange(ctx, done)
}

// RemoveMember removes the member called name; see AddMember.
func (d *Daemon) RemoveMember(ctx context.Context, name string) error {
	done, err := d.ctl.Remove(name)
	if err != nil {
		return err
	}
	return d.waitChange(ctx, done)
}

func (d *Daemon) waitChange(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		_, err := d.ctl.Status()
		return err
	case <-ctx.Done():
		return fmt.Errorf("caspaxos/daemon: the membership change goes on: %w", ctx.Err())
	}
}

// MemberChange returns the change this node's controller runs, nil if none.
func (d *Daemon) MemberChange() *membership.Change {
	ch, _ := d.ctl.Status()
	return ch
}
