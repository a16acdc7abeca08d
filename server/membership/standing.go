package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/storage"
)

// StandingConfig configures a Standing. Every duration must be positive:
// the daemon's Timers give them their defaults.
type StandingConfig struct {
	// Self is this node: its Name and ID.
	Self Member
	// WatchInterval is how often the node checks whether the membership
	// it uses still lists it.
	WatchInterval time.Duration
	// ProbeInterval is how often a member asks its peers whether their
	// membership, if newer than its own, still lists it (a node removed
	// while it was down learns of it only from them), and a held node asks
	// its change's controller whether the change still runs.
	ProbeInterval time.Duration
	// RemovedGrace bounds how long a node outside the membership waits for
	// the change that removed it to end before it reports itself removed
	// (the change's last call to it may never come: it is not required).
	RemovedGrace time.Duration
	// InfoTimeout bounds one question to a peer during those probes.
	InfoTimeout time.Duration
}

func (c StandingConfig) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"WatchInterval", c.WatchInterval}, {"ProbeInterval", c.ProbeInterval}, {"RemovedGrace", c.RemovedGrace}, {"InfoTimeout", c.InfoTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("caspaxos/membership: StandingConfig.%s must be positive, not %v", d.name, d.v))
		}
	}
	if c.Self.Name == "" || c.Self.ID == 0 {
		errs = append(errs, errors.New("caspaxos/membership: StandingConfig.Self needs a name and an ID"))
	}
	return errors.Join(errs...)
}

// StandingPeers is how a Standing reaches the other members
// (*peerapi.AdminClients is one): at their peer address, and over TLS only
// if the node there presents a certificate naming the member.
type StandingPeers interface {
	// Info asks member to about itself, as caller (0: unnamed) of
	// incarnation ("": nothing for it to record).
	Info(ctx context.Context, to Member, caller protocol.NodeID, incarnation string) (PeerInfo, error)
	// ReleaseHold asks member to to free itself of the change holding it
	// (Standing.ReleaseHold there).
	ReleaseHold(ctx context.Context, to Member, force bool) (Hold, error)
}

// Standing watches one node's standing in the cluster, beside its Keeper:
//
//   - whether it is still a member: it closes Removed once the membership
//     the node uses no longer lists it (the node had been a member, and no
//     change runs on its own controller), or once a peer's newer
//     membership does not (a node removed while it was down), and refuses
//     a removed node's start (Check);
//   - whether the change that holds it still runs: a node held by a change
//     its controller no longer stores frees itself (the hold probe), and
//     an operator frees a node whose controller is gone (ReleaseHolds).
//
// Node IDs are never reused, so a membership that no longer lists the
// node means that it was removed for good.
type Standing struct {
	cfg    StandingConfig
	keeper *Keeper
	ctl    *Controller
	record *Record
	peers  StandingPeers
	log    *slog.Logger

	removed chan struct{}
	closing atomic.Bool // Stop has begun: the hold probe frees nothing more
	cancel  context.CancelFunc
	done    chan struct{} // closed when the watch loop ended; nil if none ran
}

// NewStanding returns the standing of the node whose state keeper holds,
// whose own changes ctl runs and whose data directory holds record. It
// asks its peers through peers.
func NewStanding(cfg StandingConfig, keeper *Keeper, ctl *Controller, record *Record, peers StandingPeers, log *slog.Logger) (*Standing, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if keeper == nil || ctl == nil || record == nil || peers == nil || log == nil {
		return nil, errors.New("caspaxos/membership: NewStanding needs a keeper, a controller, a record, peers and a logger")
	}
	return &Standing{cfg: cfg, keeper: keeper, ctl: ctl, record: record, peers: peers, log: log, removed: make(chan struct{})}, nil
}

// Removed is closed when the node is no longer a member (see Standing).
// The node has no part left in the cluster, and the process should stop
// (as etcd's removed members do), instead of serving clients from outside
// it.
func (s *Standing) Removed() <-chan struct{} { return s.removed }

// Start runs the watch in the background, until Stop.
func (s *Standing) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.run(ctx)
}

// Stop ends the watch and the probes in flight: a hold probe frees
// nothing more. A Standing that did not Start has nothing to stop.
func (s *Standing) Stop() {
	s.closing.Store(true)
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

// changing reports whether this node's controller runs a change.
func (s *Standing) changing() bool {
	ch, _ := s.ctl.Status()
	return ch != nil
}

// lists reports whether m lists this node.
func (s *Standing) lists(m Membership) bool {
	_, ok := m.Node(s.cfg.Self.ID)
	return ok
}

// watch is the watch loop's state.
type watch struct {
	outside     time.Time // since when a member is not listed; zero while it is
	removed     bool      // Removed is closed
	probing     bool      // a removal probe runs
	holdProbing bool      // a hold probe runs
	found       chan uint64
	holdDone    chan bool
}

// run closes Removed when this node is no longer a member: by the
// membership it uses (tick), or by a peer's newer one (probe, found). The
// probe tick also runs the hold probe.
func (s *Standing) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.WatchInterval)
	defer t.Stop()
	probe := time.NewTicker(s.cfg.ProbeInterval)
	defer probe.Stop()
	if _, err := s.record.WasMember(); err != nil {
		s.log.Error("cannot tell whether this node has been a member; it will not stop by itself if removed", "err", err)
	}
	w := watch{found: make(chan uint64, 1), holdDone: make(chan bool, 1)}
	for {
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			s.probe(ctx, &w)
		case <-w.holdDone:
			w.holdProbing = false
		case v := <-w.found:
			w.probing = false
			s.found(&w, v)
		case <-t.C:
			s.tick(&w)
		}
	}
}

// probe starts the removal probe on a member that is listed and runs no
// change of its own, and the hold probe on a held node; one of each at a
// time.
func (s *Standing) probe(ctx context.Context, w *watch) {
	if !w.removed && !w.probing && s.record.member.Load() && s.lists(s.keeper.Membership()) && !s.changing() {
		w.probing = true
		go func() { w.found <- s.probeRemoved(ctx) }()
	}
	if st := s.keeper.State(); !w.removed && !w.holdProbing && st.Changing {
		w.holdProbing = true
		go func() { w.holdDone <- s.probeHold(ctx, st) }()
	}
}

// found acts on a removal probe's answer: v, the version of a peer's newer
// membership that does not list this node (0: none).
func (s *Standing) found(w *watch, v uint64) {
	if v == 0 || w.removed || s.changing() {
		return
	}
	if err := s.record.dir.WriteState(storage.RemovedFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		s.log.Error("cannot record the removal in the data directory", "err", err)
	}
	s.log.Warn("this node was removed from the cluster while it was down (a peer uses a newer membership that does not list it); it stops serving",
		"membership_version", s.keeper.Membership().Version(), "peer_membership_version", v)
	w.removed = true
	close(s.removed)
}

// tick checks whether the membership this node uses lists it. A node that
// had been a member and runs no change of its own is removed once it is
// outside the membership and no change holds it, or after RemovedGrace.
func (s *Standing) tick(w *watch) {
	switch st := s.keeper.State(); {
	case w.removed:
	case s.lists(st.Membership):
		w.outside = time.Time{}
	case !s.record.member.Load() || s.changing():
	case w.outside.IsZero():
		w.outside = time.Now()
	case !st.Changing || time.Since(w.outside) >= s.cfg.RemovedGrace:
		s.log.Warn("this node was removed from the cluster; it stops serving", "membership_version", st.Membership.Version())
		w.removed = true
		close(s.removed)
	}
}
