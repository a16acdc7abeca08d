// Package list serves listings (COORDINATION.md, Listing): the live keys of
// a prefix, page by page, without a global log. A Lister asks at least
// ReadQuorum acceptors of the accept set (max(Qa, N−Qa+1): together they
// meet every accept quorum) for their registers of a key range, merges the
// replies by key with protocol.MergeList (the read rule of PROTOCOL.md §6
// per key), and reads each key the replies disagree on with a linearizable
// read. A round whose node changed configuration before its replies were
// in is asked again (protocol.ListRoundStale says why). It works in rounds
// of at most Config.BatchKeys keys per acceptor, so a page of any size
// holds at most one round's replies in memory, and hands each key to its
// caller as soon as it is decided, so that the client API can stream it
// out. An acceptor's side of a scan is ScanSettled: what it shows is
// durable before it is told.
//
// The guarantee (docs/api.md, Listing): every key returned had that value
// and version at some instant during the call; every key that stayed live
// through the call is returned; no key deleted through the call is
// returned; the result is not a snapshot across keys.
//
// internal/sim checks this guarantee for the rule (protocol.MergeList and
// ReadQuorum, rounds asked again across a membership change, scans that
// wait for their writes) under every fault it has. internal/chaos checks
// it for this code: a Lister per node, over the real
// stores and a faulty network, whose listings are checked against every
// key's history (internal/chaos/doc.go, Listing).
package list

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Range is one acceptor scan: the registers of the keys that begin with
// Prefix, from Start (inclusive) in byte order, at most Limit of them and
// about MaxBytes of keys and values (at least one entry whatever its size).
// Values over MaxValueBytes, and every value with KeysOnly, are left out
// (ListEntry.ValueOmitted).
type Range struct {
	Prefix        string
	Start         string
	Limit         int
	MaxBytes      int
	MaxValueBytes int
	KeysOnly      bool
}

// Acceptors reaches the acceptors' stores: this node's directly, the
// others' through the peer port's Admin.ScanRegisters.
type Acceptors interface {
	Scan(ctx context.Context, id protocol.NodeID, r Range) (protocol.ListReply, error)
}

// Reader reads one key linearizably (a get through the node).
type Reader func(ctx context.Context, key string) (protocol.State, error)

// Config bounds a listing's work.
type Config struct {
	// MaxValueBytes: a value larger than this is left out of a listing,
	// with ValueOmitted set (default 64 KiB).
	MaxValueBytes int
	// BatchKeys is the most keys one round asks each acceptor for
	// (default 1024: a page of the default 1,000 keys is one round of
	// scans, one peer round trip; ReplyBytes still bounds a reply).
	BatchKeys int
	// ReplyBytes is about the most bytes of keys and values one acceptor's
	// reply carries (default 1 MiB; the peer port's gRPC messages are
	// limited to 4 MiB).
	ReplyBytes int
	// Bugs switches on deliberately broken behaviour, for the chaos
	// harness's negative tests only (internal/chaos.Variants).
	Bugs Bugs
}

// Bugs are deliberately broken behaviours of a Lister. The zero value is
// the correct one.
type Bugs struct {
	// TrustOneReply: each round takes the first acceptor's reply alone
	// and merges it with a quorum of one, so that every key it holds is
	// "chosen" at whatever that acceptor last accepted, and a key it lacks
	// is skipped: a lagging acceptor's stale value, deleted key or missing
	// key is returned as the listing's.
	TrustOneReply bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxValueBytes: 64 << 10, BatchKeys: 1024, ReplyBytes: 1 << 20}
}

func (c Config) validate() error {
	if c.MaxValueBytes < 0 || c.BatchKeys < 1 || c.ReplyBytes < 1 {
		return fmt.Errorf("caspaxos/list: MaxValueBytes %d must be at least 0, BatchKeys %d and ReplyBytes %d at least 1",
			c.MaxValueBytes, c.BatchKeys, c.ReplyBytes)
	}
	return nil
}

// Lister serves listings for one node.
type Lister struct {
	cfg  Config
	conf func() protocol.Config
	acc  Acceptors
	read Reader
}

// New returns a Lister that finds the accept set in conf (called once per
// round), scans through acc and reads undecided keys through read.
func New(cfg Config, conf func() protocol.Config, acc Acceptors, read Reader) (*Lister, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if conf == nil || acc == nil || read == nil {
		return nil, errors.New("caspaxos/list: New needs a configuration, acceptors and a reader")
	}
	return &Lister{cfg: cfg, conf: conf, acc: acc, read: read}, nil
}

// MaxValueBytes is the size over which a listing leaves a value out.
func (l *Lister) MaxValueBytes() int { return l.cfg.MaxValueBytes }

// List runs one page of req (which Validate has checked): it calls allow for
// each key it may return (false: the caller may not see it; it is skipped
// and not counted) and emit for each live key, in key order, up to
// req.Limit. more: the page stopped at its limit before the end of the
// range (the next page may still turn out empty). An error from allow, emit
// or a read ends the page; what was emitted stays true.
func (l *Lister) List(ctx context.Context, req kv.ListRequest, allow func(string) (bool, error), emit func(kv.ListItem) error) (more bool, err error) {
	left := req.Limit
	r := Range{Prefix: req.Prefix, Start: Start(req.Prefix, req.After), MaxBytes: l.cfg.ReplyBytes,
		MaxValueBytes: l.cfg.MaxValueBytes, KeysOnly: req.KeysOnly}
	for {
		r.Limit = min(left, l.cfg.BatchKeys)
		asked, quorum, replies, err := l.ask(ctx, r)
		if err != nil {
			return false, err
		}
		if protocol.ListRoundStale(asked, l.conf()) {
			// The node changed configuration while the round ran: its
			// replies may miss quorums now in use. Ask again.
			continue
		}
		keys, through, done := protocol.MergeList(quorum, replies)
		for i, k := range keys {
			item, ok, err := l.decide(ctx, req, k, allow)
			if err != nil {
				return false, err
			}
			if !ok {
				continue
			}
			if err := emit(item); err != nil {
				return false, err
			}
			if left--; left == 0 {
				return i < len(keys)-1 || !done, nil
			}
		}
		if done {
			return false, nil
		}
		r.Start = through + "\x00" // the least key after through
	}
}

// Start is the first key a page may hold: the prefix's first, or the least
// key after after; never a reserved key (kv.ReservedPrefix), unless the
// prefix is reserved itself (see reservedShown). The simulator's listers
// start their pages with it.
func Start(prefix, after string) string {
	s := prefix
	if after != "" && after >= prefix {
		s = after + "\x00"
	}
	if s < "\x01" && !reservedShown(prefix) {
		s = "\x01"
	}
	return s
}

// reservedShown says whether a listing of prefix shows reserved keys: only
// when the prefix is itself in the reserved space. A client's listing never
// names such a prefix (kv.ListRequest.Validate refuses it), so only the
// node's own services list the cluster's keys, and only the part they
// name: the etcd API's LeaseLeases lists kv.LeasePrefix.
func reservedShown(prefix string) bool { return kv.CheckClientKey(prefix) != nil }

// decide turns the merge's verdict on k into the item to return, reading
// the key linearizably if the replies disagreed. ok false: nothing to
// return (not live, not allowed, reserved, or out of the range).
func (l *Lister) decide(ctx context.Context, req kv.ListRequest, k protocol.ListKey, allow func(string) (bool, error)) (kv.ListItem, bool, error) {
	if !kv.PrefixShows(req.Prefix, k.Key) || (req.After != "" && k.Key <= req.After) {
		return kv.ListItem{}, false, nil
	}
	if ok, err := allow(k.Key); err != nil || !ok {
		return kv.ListItem{}, false, err
	}
	st, omitted := k.State, k.ValueOmitted
	if k.Verdict == protocol.ListUndecided {
		var err error
		if st, err = l.read(ctx, k.Key); err != nil {
			return kv.ListItem{}, false, fmt.Errorf("caspaxos/list: reading %q, on which the acceptors disagree: %w", k.Key, err)
		}
		omitted = false
	}
	if !st.Exists() {
		return kv.ListItem{}, false, nil
	}
	item := kv.ListItem{Key: k.Key, Version: st.Version, Value: st.Value, Created: st.Created, Attrs: st.Attrs}
	switch {
	case req.KeysOnly:
		item.Value = nil
	case omitted || len(st.Value) > l.cfg.MaxValueBytes:
		item.Value, item.ValueOmitted = nil, true
	}
	return item, true, nil
}

// ask scans r on the acceptors of the accept set, all at once, and returns
// the configuration it asked under and the first ReadQuorum replies (the
// others are cancelled): that many are enough for the read rule, and
// waiting for more would tie every listing to the slowest acceptor. Fewer
// replies than that: kv.ErrNoQuorum.
func (l *Lister) ask(ctx context.Context, r Range) (protocol.Config, int, []protocol.ListReply, error) {
	conf := l.conf()
	quorum := conf.ReadQuorum()
	if l.cfg.Bugs.TrustOneReply {
		quorum = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		reply protocol.ListReply
		err   error
	}
	answers := make(chan answer, len(conf.AcceptSet))
	for _, id := range conf.AcceptSet {
		go func() {
			rep, err := l.acc.Scan(ctx, id, r)
			if err == nil {
				err = check(rep, r)
			}
			if err != nil {
				err = fmt.Errorf("acceptor %d: %w", id, err)
			}
			answers <- answer{rep, err}
		}()
	}
	var replies []protocol.ListReply
	var errs []error
	for range conf.AcceptSet {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		if replies = append(replies, a.reply); len(replies) == quorum {
			return conf, quorum, replies, nil
		}
	}
	return conf, 0, nil, fmt.Errorf("%w: caspaxos/list: %d of the %d acceptors needed answered: %w", kv.ErrNoQuorum, len(replies), quorum, errors.Join(errs...))
}

// check refuses a reply that breaks the scan's contract: keys out of order
// or out of the range, too many of them, More without an entry. A merge
// over such a reply could decide wrongly.
func check(rep protocol.ListReply, r Range) error {
	if len(rep.Entries) > r.Limit || (rep.More && len(rep.Entries) == 0) {
		return fmt.Errorf("caspaxos/list: a reply of %d entries (more %v) to a scan of at most %d", len(rep.Entries), rep.More, r.Limit)
	}
	prev := ""
	for i, e := range rep.Entries {
		if e.Key < r.Start || !strings.HasPrefix(e.Key, r.Prefix) || (i > 0 && e.Key <= prev) {
			return fmt.Errorf("caspaxos/list: a reply's key %q is out of order or out of the range", e.Key)
		}
		prev = e.Key
	}
	return nil
}

// ScanSettled is an acceptor's side of a scan as a node serves it:
// ScanStore, then settle (the acceptor's Settle) before the reply may
// leave. A store may show a register whose write is still being synced
// (Pebble does), and the read rule counts what a quorum of scans show as
// chosen: without settle, a crash could take back a state a listing
// returned (internal/sim's broken variant scan-before-sync).
func ScanSettled(ctx context.Context, store interface {
	Scan(start string, fn func(string, protocol.Register) bool) error
}, settle func(context.Context) error, r Range) (protocol.ListReply, error) {
	rep, err := ScanStore(store, r)
	if err != nil {
		return protocol.ListReply{}, err
	}
	if err := settle(ctx); err != nil {
		return protocol.ListReply{}, fmt.Errorf("caspaxos/list: waiting for the writes a scan shows to be durable: %w", err)
	}
	return rep, nil
}

// ScanStore is an acceptor's scan of r over store, as it stands (some of
// it maybe not durable yet: see ScanSettled).
func ScanStore(store interface {
	Scan(start string, fn func(string, protocol.Register) bool) error
}, r Range) (protocol.ListReply, error) {
	var rep protocol.ListReply
	size := 0
	err := store.Scan(r.Start, func(key string, reg protocol.Register) bool {
		if !strings.HasPrefix(key, r.Prefix) {
			return false
		}
		if len(rep.Entries) >= r.Limit || (len(rep.Entries) > 0 && size >= r.MaxBytes) {
			rep.More = true
			return false
		}
		e := protocol.ListEntry{Key: key, Register: reg}
		if r.KeysOnly || len(reg.State.Value) > r.MaxValueBytes {
			e.Register.State.Value, e.ValueOmitted = nil, reg.State.Value != nil
		}
		size += len(key) + len(e.Register.State.Value) + 64 // 64: about the ballots and flags on the wire
		rep.Entries = append(rep.Entries, e)
		return true
	})
	return rep, err
}
