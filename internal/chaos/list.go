package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/list"
)

// listPercent is the share of a client's turns spent listing.
const listPercent = 5

// listTimeout is a client's deadline for one page: a page may read a few
// keys linearizably after its scans, so it gets more than one operation.
const listTimeout = 500 * time.Millisecond

// listPages is the most pages one listing follows.
const listPages = 4

// newLister builds inc's Lister as the daemon does (server/daemon/list.go):
// over its membership's accept set, its own store directly and the others'
// through the network, and reading undecided keys through its node; with
// small batches, so that a round's merge stops at a reply's limit.
func (c *cluster) newLister(inc *incarnation) (*list.Lister, error) {
	cfg := list.DefaultConfig()
	cfg.BatchKeys = 2
	cfg.Bugs.TrustOneReply = c.variant.ListTrustOneReply
	return list.New(cfg, inc.keeper.Config, listAcceptors{inc}, func(ctx context.Context, key string) (protocol.State, error) {
		return inc.node.Do(ctx, kv.Op{Kind: kv.OpGet, Key: key})
	})
}

// listAcceptors is a node's list.Acceptors: its own store directly, the
// others' as the peer port's Admin.ScanRegisters would reach them over the
// faulty network. A call over a cut link or to a node down fails at once;
// a call lost there or back (the plan's loss rate) is never answered, and
// waits for the caller's deadline, as a lost gRPC call would; each leg may
// be held up to MaxDelay (the plan's delay rate), so that a scan runs a
// while after it was asked, and its reply is older than its arrival.
type listAcceptors struct{ inc *incarnation }

var _ list.Acceptors = listAcceptors{}

func (a listAcceptors) Scan(ctx context.Context, id protocol.NodeID, r list.Range) (protocol.ListReply, error) {
	if id == a.inc.id {
		if !a.inc.alive.Load() {
			return protocol.ListReply{}, fmt.Errorf("%w: node %d is down", server.ErrUnreachable, id)
		}
		if err := a.inc.node.Err(); err != nil {
			return protocol.ListReply{}, err
		}
		return list.ScanSettled(ctx, a.inc.store, a.inc.node.Acceptor().Settle, r)
	}
	n := a.inc.net
	dst, err := n.call(a.inc, id)
	if err != nil {
		return protocol.ListReply{}, err
	}
	lostThere, lostBack := n.callFaults()
	if err := hold(ctx, n.callDelay(), lostThere); err != nil {
		return protocol.ListReply{}, err
	}
	if err := dst.node.Err(); err != nil || !dst.alive.Load() {
		return protocol.ListReply{}, fmt.Errorf("%w: node %d stopped", server.ErrUnreachable, id)
	}
	rep, err := list.ScanSettled(ctx, dst.store, dst.node.Acceptor().Settle, r)
	if err != nil {
		return protocol.ListReply{}, err
	}
	if err := hold(ctx, n.callDelay(), lostBack); err != nil {
		return protocol.ListReply{}, err
	}
	return rep, nil
}

// hold waits d, or until ctx ends if lost (the message never arrives).
func hold(ctx context.Context, d time.Duration, lost bool) error {
	if lost {
		<-ctx.Done()
		return ctx.Err()
	}
	if d == 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d) // the network's delay, not a wait for an outcome
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// listPage is one page a client asked for, as it ended.
type listPage struct {
	client     int
	node       protocol.NodeID
	req        kv.ListRequest
	call, ret  int64
	keys       []string // in the order returned
	more, done bool     // done: the page ended without an error
}

// covers reports whether key lies in what p, a page that ended well,
// answered for: its prefix, after its After, and up to its last key if it
// stopped at its limit.
func (p *listPage) covers(key string) bool {
	if !strings.HasPrefix(key, p.req.Prefix) || (p.req.After != "" && key <= p.req.After) {
		return false
	}
	return !p.more || key <= p.keys[len(p.keys)-1]
}

func (p *listPage) String() string {
	return fmt.Sprintf("client %d's page on node %d (prefix %q, after %q, limit %d, keys only %v) from %v to %v: %q (more %v)",
		p.client, p.node, p.req.Prefix, p.req.After, p.req.Limit, p.req.KeysOnly,
		time.Duration(p.call), time.Duration(p.ret), p.keys, p.more)
}

// listClient is the Porcupine client of a client's listed items, apart
// from its own operations, which never overlap one another.
func listClient(id int) int { return 1000 + id }

// list lists a prefix (every key, one family of keys, or k1's few) from
// inc's node, page after page with small limits, until the end, an error
// or listPages pages. Each item of a page is a read of its key over the
// whole page's call (a value and version it had at some instant during
// it); each page is kept for the completeness check (checkLists).
func (cl *client) list(inc *incarnation, r *rand.Rand) {
	prefixes := []string{"", "k", "k1"}
	if cl.c.plan.ColdKeys > 0 {
		prefixes = append(prefixes, "c")
	}
	req := kv.ListRequest{Prefix: prefixes[r.IntN(len(prefixes))], Limit: 1 + r.IntN(3), KeysOnly: r.IntN(5) == 0}
	for range listPages {
		p := &listPage{client: cl.id, node: inc.id, req: req}
		var items []kv.ListItem
		ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
		p.call = cl.h.now()
		more, err := inc.lister.List(ctx, req, func(string) (bool, error) { return true, nil }, func(it kv.ListItem) error {
			items = append(items, it)
			return nil
		})
		p.ret = cl.h.now()
		cancel()
		for _, it := range items {
			p.keys = append(p.keys, it.Key)
		}
		p.more, p.done = more, err == nil
		cl.h.mu.Lock()
		cl.h.pages = append(cl.h.pages, p)
		for _, it := range items {
			if it.ValueOmitted || req.KeysOnly {
				continue // no value to check
			}
			// What a page emitted stays true after a later error: the
			// item was the key's state at some instant before its return.
			cl.h.ops = append(cl.h.ops, sim.HistoryOp{Client: listClient(cl.id), Op: kv.Op{Kind: kv.OpGet, Key: it.Key},
				Call: p.call, Return: p.ret, State: protocol.State{Value: it.Value, Version: it.Version}})
			cl.h.listItems++
		}
		if err != nil && !listFailure(err) && len(cl.h.unexpected) < 10 {
			cl.h.unexpected = append(cl.h.unexpected, fmt.Sprintf("%v: unexpected error: %v", p, err))
		}
		cl.h.mu.Unlock()
		if err != nil || !more {
			return
		}
		req.After = p.keys[len(p.keys)-1]
	}
}

// listFailure reports whether err is how a page may fail under faults: no
// quorum of scans, or a linearizable read that could not finish.
func listFailure(err error) bool {
	for _, e := range []error{kv.ErrNoQuorum, kv.ErrUnknownOutcome, server.ErrStopped, server.ErrUnreachable, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkLists checks the listing guarantee's completeness half on every
// page that ended well: each key live throughout the page's call, within
// what the page covers, was returned. (That each item was the key's state
// at some instant of the call, and so never a key deleted or absent
// throughout, is Porcupine's to check: the items are reads in the
// histories.) It returns the failures and how many (page, key) pairs were
// live throughout, and so checked.
//
// A key is live throughout [call, ret] if a write of it that succeeded
// (Put, Create, CompareAndSwap, Increment) returned before call, and no
// delete may have taken effect after that write and before ret: no delete
// that succeeded and returned after the write was called, and no delete of
// unknown outcome called before ret (it may take effect at any time after
// its call). Only a delete ends a key's life; GC only removes tombstones.
func checkLists(pages []*listPage, ops []sim.HistoryOp) (failures []string, checked int) {
	byKey := make(map[string][]sim.HistoryOp)
	for _, op := range ops {
		if !op.GC && op.Op.Kind != kv.OpGet {
			byKey[op.Op.Key] = append(byKey[op.Op.Key], op)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, p := range pages {
		if !p.done {
			continue
		}
		for _, k := range keys {
			if !p.covers(k) || !liveThroughout(byKey[k], p.call, p.ret) {
				continue
			}
			checked++
			if !slices.Contains(p.keys, k) && len(failures) < 10 {
				failures = append(failures, fmt.Sprintf("listing: key %q was live throughout %v, and is missing", k, p))
			}
		}
	}
	return failures, checked
}

// liveThroughout reports whether ops, a key's writes and deletes, show it
// live from call to ret (checkLists).
func liveThroughout(ops []sim.HistoryOp, call, ret int64) bool {
	// The later a write was called, the fewer deletes may follow it: the
	// write called last among those that returned before call decides.
	var w *sim.HistoryOp
	for i, op := range ops {
		if !op.Unknown && op.Err == nil && op.Op.Kind != kv.OpDelete && op.Return < call && (w == nil || op.Call > w.Call) {
			w = &ops[i]
		}
	}
	if w == nil {
		return false
	}
	for _, d := range ops {
		if d.Op.Kind == kv.OpDelete && d.Call < ret && (d.Unknown || (d.Err == nil && d.Return > w.Call)) {
			return false
		}
	}
	return true
}
