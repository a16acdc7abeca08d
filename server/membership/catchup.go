package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/caspaxos/caspaxos/protocol"
)

// The catch-up (PROTOCOL.md §8 step 3): every key any acceptor of a
// majority of the old configuration holds is rewritten through the new
// one, by proposer.Proposer.Rewrite on the controller's node: the identity change
// x -> x that always sends its accept. A key chosen before the step was
// accepted by a quorum of the old acceptors, which meets any majority of
// them, so the union of their keys holds every chosen key; after the
// rewrite its state is accepted by an accept quorum of the new
// configuration, with a ballot above everything accepted before.
//
// We rewrite rather than copy register state from a majority into the new
// acceptor: a rewrite goes through the ordinary protocol (prepare quorum,
// ballot order, the acceptors' checks and the GC age fences), so it is safe
// under concurrent writes and needs no new acceptor-side operation that
// could bypass those checks; a copy must pick the highest accepted ballot
// among replies that may be changing while they are read, and writes
// registers behind the protocol's back. A rewrite also serves the shrink's
// catch-up, where no acceptor is new.
//
// The keys of a joining acceptor are scanned too: a node re-added with old
// data may hold registers that GC removed everywhere else meanwhile, and
// the rewrite replaces them with the chosen state (nothing) under a higher
// ballot before the node enters a prepare set.
//
// Keys are streamed in pages, merged in order over the sources (a page ends
// at the smallest last key of the sources that have more), so memory stays
// bounded by a page per source. A first pass counts the union (the total
// shown as progress); the second rewrites it page by page, persisting the
// cursor, so that a restarted controller continues after the last page done.

// catchUpPage counts the keys (first call) or rewrites one page of them and
// persists the progress; ch.CaughtUp is set after the last page.
func (c *Controller) catchUpPage(ctx context.Context, ch *Change) error {
	if !ch.CatchUp.Counted {
		var total uint64
		cursor := ""
		for {
			keys, next, more, err := c.page(ctx, ch, cursor)
			if err != nil {
				return fmt.Errorf("catch-up count: %w", err)
			}
			total += uint64(len(keys))
			if !more {
				break
			}
			cursor = next
		}
		return c.commit(ch, func(n *Change) { n.CatchUp = CatchUp{Counted: true, Total: total} })
	}
	keys, next, more, err := c.page(ctx, ch, ch.CatchUp.Cursor)
	if err != nil {
		return fmt.Errorf("catch-up: %w", err)
	}
	// A page's rewrites get a deadline like every other call of a change:
	// one that does not finish is retried (x -> x is idempotent) rather than
	// holding the change for good.
	rctx, cancel := context.WithTimeout(ctx, 2*c.cfg.CallTimeout)
	defer cancel()
	var errs []error
	for i, r := range c.rw.Rewrite(rctx, keys) {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", keys[i], r.Err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("catch-up rewrite: %w", err)
	}
	return c.commit(ch, func(n *Change) {
		n.CatchUp.Done += uint64(len(keys))
		n.CatchUp.Total = max(n.CatchUp.Total, n.CatchUp.Done) // keys written since the count
		n.CatchUp.Cursor = next
		n.CaughtUp = !more
	})
}

// page returns the next keys at or after cursor of the union of the
// sources' keys, the cursor after them, and whether more may follow.
func (c *Controller) page(ctx context.Context, ch *Change, cursor string) (keys []string, next string, more bool, err error) {
	step := ch.Steps[ch.Next].Membership
	seen := map[protocol.NodeID]bool{}
	var sources []Member
	for _, m := range append(slices.Clone(ch.From.Nodes), step.Nodes...) {
		if !seen[m.ID] {
			seen[m.ID] = true
			sources = append(sources, m)
		}
	}
	limit := c.cfg.PageKeys
	lists, ok := c.scan(ctx, ch, sources, cursor, limit)
	old, target := c.scanned(ch, sources, ok, true)
	if need := len(ch.From.Config.AcceptSet)/2 + 1; old < need {
		return nil, "", false, fmt.Errorf("%d of the %d old acceptors answered a key scan; a majority (%d) is needed", old, len(ch.From.Config.AcceptSet), need)
	}
	if ch.Op == "add" && !target {
		return nil, "", false, fmt.Errorf("the joining node %s did not answer a key scan", ch.Target.Name)
	}
	// A page ends at the smallest last key of the sources that have more:
	// beyond it, those sources' keys are not known yet.
	bound, bounded := "", false
	for i := range sources {
		if ok[i] && len(lists[i]) >= limit {
			last := lists[i][len(lists[i])-1]
			if !bounded || last < bound {
				bound, bounded = last, true
			}
		}
	}
	for i := range sources {
		for _, k := range lists[i] {
			if !bounded || k <= bound {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if !bounded {
		return keys, "", false, nil
	}
	return keys, bound + "\x00", true, nil
}

// scan asks every source for its keys at or after cursor, each within
// CallTimeout, and reports which answered. The node a removal takes out
// may be gone for good (a lost disk) and then never answers: its scan is
// given up as soon as the others answered with a majority of the old
// acceptors, instead of costing CallTimeout on each page of both passes
// (a dead node's removal took 2 x 5s per 256 keys).
func (c *Controller) scan(ctx context.Context, ch *Change, sources []Member, cursor string, limit int) ([][]string, []bool) {
	lists := make([][]string, len(sources))
	ok := make([]bool, len(sources))
	leavingCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	var others, leaving sync.WaitGroup
	for i, m := range sources {
		wg, parent := &others, ctx
		if ch.Op == "remove" && m.ID == ch.Target.ID {
			wg, parent = &leaving, leavingCtx
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(parent, c.cfg.CallTimeout)
			defer cancel()
			l, err := c.peers.ScanKeys(cctx, m, cursor, limit)
			if err == nil {
				lists[i], ok[i] = l, true
			}
		}()
	}
	others.Wait()
	if old, _ := c.scanned(ch, sources, ok, false); old >= len(ch.From.Config.AcceptSet)/2+1 {
		giveUp()
	}
	leaving.Wait()
	return lists, ok
}

// scanned counts the old acceptors that answered a scan, and reports
// whether the change's target did; withLeaving false leaves out the node
// a removal takes out (its scan may still be running).
func (c *Controller) scanned(ch *Change, sources []Member, ok []bool, withLeaving bool) (old int, target bool) {
	for i, m := range sources {
		isTarget := m.ID == ch.Target.ID
		if (isTarget && ch.Op == "remove" && !withLeaving) || !ok[i] {
			continue
		}
		if slices.Contains(ch.From.Config.AcceptSet, m.ID) {
			old++
		}
		target = target || isTarget
	}
	return old, target
}
