package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/membership"
)

// Membership change in the harness: node 1 runs a membership.Controller,
// which reaches every node's Keeper through ctlPeers over the faulty
// network, and rewrites keys (the catch-up) through node 1's proposer. The
// fault schedule starts a joining node and asks for each change of the plan
// (AddNode, RemoveNode) once the change before it ended, and stops a
// removed node once its removal ended, as an operator would.

// controllerConfig is node 1's controller: short delays, so that a change
// takes a fraction of a run, and small catch-up pages, so that a catch-up
// takes several.
func controllerConfig(v Variant) membership.ControllerConfig {
	return membership.ControllerConfig{
		Self:        memberOf(1),
		PageKeys:    4,
		RetryBase:   2 * time.Millisecond,
		RetryMax:    20 * time.Millisecond,
		CallTimeout: 300 * time.Millisecond,
		SettlePoll:  2 * time.Millisecond,
		Bugs:        membership.Bugs{NoCatchUp: v.NoCatchUp},
	}
}

// ctlPeers is membership.Peers for the controller on node from. A call
// reaches a node as a message does (a cut link, a node down, or a receiver
// whose links leave the controller's node out fail it), but not through
// the caller's links: a controller reaches a joining node by its address
// before any membership lists it. Each call also fails now and then
// before it runs, or after (its reply lost), with the plan's loss rate:
// the controller must retry either.
type ctlPeers struct {
	c    *cluster
	from protocol.NodeID
}

var _ membership.Peers = (*ctlPeers)(nil)

// do runs fn on the incarnation of node to that the call reaches.
func (p *ctlPeers) do(to membership.Member, fn func(*incarnation) error) error {
	p.c.mu.Lock()
	src := p.c.up[p.from]
	p.c.mu.Unlock()
	if src == nil || !src.alive.Load() {
		return fmt.Errorf("%w: node %d is down", server.ErrUnreachable, p.from)
	}
	dst := p.c.net.route(p.from, to.ID)
	if dst == nil {
		return fmt.Errorf("%w: %d->%d is cut or down", server.ErrUnreachable, p.from, to.ID)
	}
	before, after := p.c.net.callFaults()
	if before {
		return fmt.Errorf("%w: call to %d lost", server.ErrUnreachable, to.ID)
	}
	if err := fn(dst); err != nil {
		return err
	}
	if after {
		return fmt.Errorf("%w: reply of %d lost", server.ErrUnreachable, to.ID)
	}
	return nil
}

func (p *ctlPeers) SetState(ctx context.Context, to membership.Member, st membership.NodeState) error {
	return p.do(to, func(inc *incarnation) error { return inc.keeper.Set(ctx, st) })
}

func (p *ctlPeers) Settled(ctx context.Context, to membership.Member, version uint64) (bool, error) {
	var ok bool
	err := p.do(to, func(inc *incarnation) (err error) {
		ok, err = inc.keeper.Settled(ctx, version)
		return err
	})
	return ok, err
}

func (p *ctlPeers) Fences(_ context.Context, to membership.Member) (membership.Fences, error) {
	var f membership.Fences
	err := p.do(to, func(inc *incarnation) (err error) {
		f, err = membership.ReadFences(inc.store)
		return err
	})
	return f, err
}

func (p *ctlPeers) SetFences(ctx context.Context, to membership.Member, f membership.Fences) error {
	return p.do(to, func(inc *incarnation) error { return membership.TakeFences(ctx, inc.node, f) })
}

func (p *ctlPeers) ScanKeys(_ context.Context, to membership.Member, start string, limit int) ([]string, error) {
	var keys []string
	err := p.do(to, func(inc *incarnation) (err error) {
		keys, err = membership.ScanKeys(inc.store, start, limit)
		return err
	})
	return keys, err
}

// changeStore is the controller's membership.ChangeStore: node 1 is never
// crashed in a Membership plan, so memory serves as its disk.
type changeStore struct {
	mu sync.Mutex
	ch *membership.Change
}

func (s *changeStore) LoadChange() (*membership.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch.Clone(), nil
}

func (s *changeStore) SaveChange(ch *membership.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ch = ch.Clone()
	return nil
}

// changes is the fault schedule's side of membership change: the change
// in progress and those waiting for it.
type changes struct {
	ctl     *membership.Controller
	waiting []Event // due, waiting for the change in progress
	current *Event  // the change in progress, nil if none
	done    <-chan struct{}
	ended   int  // changes that ended well
	late    int  // of which once the clients had stopped
	over    bool // the clients stopped
}

// startController starts node 1's controller (Membership plans).
func (c *cluster) startController() error {
	inc := c.members[1].inc
	ctl, err := membership.NewController(controllerConfig(c.variant), &ctlPeers{c: c, from: 1}, inc.node.Proposer(),
		&changeStore{}, inc.keeper.Membership, c.log)
	if err != nil {
		return err
	}
	c.changes = &changes{ctl: ctl}
	return nil
}

// change queues a membership change of the plan, and starts it unless
// another is in progress.
func (c *cluster) change(e Event) {
	c.changes.waiting = append(c.changes.waiting, e)
	c.nextChange()
}

// nextChange ends the change in progress if it is over (a removed node is
// stopped), and starts the next one waiting, if any.
func (c *cluster) nextChange() {
	ch := c.changes
	if ch == nil {
		return
	}
	if ch.current != nil {
		select {
		case <-ch.done:
		default:
			return
		}
		e := *ch.current
		ch.current = nil
		if _, err := ch.ctl.Status(); err != nil {
			c.fail(fmt.Sprintf("membership change %s n%d failed: %v", e.Kind, e.Node, err))
		} else {
			ch.ended++
			if ch.over {
				ch.late++
			}
		}
		if e.Kind == RemoveNode {
			m := c.members[e.Node]
			m.active = false // removed: stopped for good
			c.stop(m, 0)
		}
	}
	for ch.current == nil && len(ch.waiting) > 0 {
		e := ch.waiting[0]
		ch.waiting = ch.waiting[1:]
		var done <-chan struct{}
		var err error
		switch e.Kind {
		case AddNode:
			m := c.members[e.Node]
			m.active = true
			if m.inc == nil {
				if err := c.start(m); err != nil {
					c.fail(err.Error())
					continue
				}
			}
			done, err = ch.ctl.Add(memberOf(e.Node))
		case RemoveNode:
			done, err = ch.ctl.Remove(memberOf(e.Node).Name)
		}
		if err != nil {
			c.fail(fmt.Sprintf("membership change %s n%d: %v", e.Kind, e.Node, err))
			continue
		}
		ch.current, ch.done = &e, done
	}
}

// finishChanges runs the changes left once the clients stopped, every
// fault healed and every node up, and fails the run if they do not end
// within limit.
func (c *cluster) finishChanges(limit time.Duration) {
	ch := c.changes
	if ch == nil {
		return
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	c.nextChange()
	ch.over = true
	for {
		c.nextChange()
		if ch.current == nil {
			return
		}
		select {
		case <-ch.done:
		case <-deadline.C:
			st, _ := ch.ctl.Status()
			c.fail(fmt.Sprintf("membership change %s n%d did not end within %v of the run's end: %+v", ch.current.Kind, ch.current.Node, limit, st))
			ch.ctl.Stop()
			return
		}
	}
}
