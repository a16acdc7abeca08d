package list

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// store is an acceptor's registers, scanned in key order.
type store map[string]protocol.Register

func (s store) Scan(start string, fn func(string, protocol.Register) bool) error {
	keys := make([]string, 0, len(s))
	for k := range s {
		if k >= start {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn(k, s[k]) {
			return nil
		}
	}
	return nil
}

// acceptors serves scans from stores; a missing store is down.
type acceptors map[protocol.NodeID]store

func (a acceptors) Scan(_ context.Context, id protocol.NodeID, r Range) (protocol.ListReply, error) {
	s, ok := a[id]
	if !ok {
		return protocol.ListReply{}, errors.New("down")
	}
	return ScanStore(s, r)
}

var (
	b1 = protocol.Ballot{Counter: 1, Proposer: 1}
	b2 = protocol.Ballot{Counter: 2, Proposer: 2}
)

func live(b protocol.Ballot, v string, version uint64) protocol.Register {
	return protocol.Register{Promise: b, Accepted: b, State: protocol.State{Value: []byte(v), Version: version}}
}

func tomb(b protocol.Ballot, version uint64) protocol.Register {
	return protocol.Register{Promise: b, Accepted: b, State: protocol.State{Version: version, Deleted: true}}
}

// same is one store held alike by every acceptor.
func same(s store) acceptors { return acceptors{1: s, 2: s, 3: s} }

func TestList(t *testing.T) {
	abc := store{"a": live(b1, "va", 1), "b": live(b1, "vb", 1), "c": live(b1, "vc", 1), "d": live(b1, "vd", 1), "e": live(b1, "ve", 1)}
	item := func(k, v string, version uint64) kv.ListItem {
		return kv.ListItem{Key: k, Value: []byte(v), Version: version}
	}
	tests := []struct {
		name  string
		cfg   func(*Config)
		acc   acceptors
		req   kv.ListRequest
		allow func(string) bool
		items []kv.ListItem
		more  bool
		reads []string // the keys read linearizably
		// readAbsent: the linearizable read finds the key absent; and the
		// keys read are not checked, since which acceptors answer first
		// decides whether a read is needed.
		readAbsent bool
	}{{
		name:  "agreeing replies",
		acc:   same(store{"a": live(b1, "va", 1), "b": live(b1, "vb", 3)}),
		items: []kv.ListItem{item("a", "va", 1), item("b", "vb", 3)},
	}, {
		name: "a disagreeing key is read linearizably",
		acc: acceptors{
			1: store{"a": live(b1, "va", 1), "k": live(b2, "new", 2)},
			2: store{"a": live(b1, "va", 1), "k": live(b1, "old", 1)},
		},
		items: []kv.ListItem{item("a", "va", 1), item("k", "read", 7)},
		reads: []string{"k"},
	}, {
		name:  "a tombstone is not returned",
		acc:   same(store{"a": tomb(b2, 2), "b": live(b1, "vb", 1)}),
		items: []kv.ListItem{item("b", "vb", 1)},
	}, {
		name: "a key only a minority holds is absent or read",
		acc: acceptors{
			1: store{"a": live(b1, "va", 1), "m": live(b2, "unchosen", 1)},
			2: store{"a": live(b1, "va", 1)},
			3: store{"a": live(b1, "va", 1)},
		},
		items:      []kv.ListItem{item("a", "va", 1)},
		readAbsent: true,
	}, {
		name:  "a prefix",
		acc:   same(store{"a/1": live(b1, "1", 1), "a/2": live(b1, "2", 1), "ab": live(b1, "x", 1), "b/1": live(b1, "y", 1)}),
		req:   kv.ListRequest{Prefix: "a/"},
		items: []kv.ListItem{item("a/1", "1", 1), item("a/2", "2", 1)},
	}, {
		name:  "first page",
		acc:   same(abc),
		req:   kv.ListRequest{Limit: 2},
		items: []kv.ListItem{item("a", "va", 1), item("b", "vb", 1)},
		more:  true,
	}, {
		name:  "a page after a key",
		acc:   same(abc),
		req:   kv.ListRequest{Limit: 2, After: "b"},
		items: []kv.ListItem{item("c", "vc", 1), item("d", "vd", 1)},
		more:  true,
	}, {
		name:  "the last page",
		acc:   same(abc),
		req:   kv.ListRequest{Limit: 2, After: "d"},
		items: []kv.ListItem{item("e", "ve", 1)},
	}, {
		name:  "rounds smaller than the page, over tombstones",
		cfg:   func(c *Config) { c.BatchKeys = 1 },
		acc:   same(store{"a": tomb(b1, 1), "b": live(b1, "vb", 1), "c": tomb(b1, 1), "d": tomb(b1, 1), "e": live(b1, "ve", 1)}),
		req:   kv.ListRequest{Limit: 10},
		items: []kv.ListItem{item("b", "vb", 1), item("e", "ve", 1)},
	}, {
		name:  "keys only",
		acc:   same(store{"a": live(b1, "va", 4)}),
		req:   kv.ListRequest{KeysOnly: true},
		items: []kv.ListItem{{Key: "a", Version: 4}},
	}, {
		name:  "a large value is omitted, with the flag",
		cfg:   func(c *Config) { c.MaxValueBytes = 4 },
		acc:   same(store{"a": live(b1, "12345", 1), "b": live(b1, "1234", 1)}),
		items: []kv.ListItem{{Key: "a", Version: 1, ValueOmitted: true}, item("b", "1234", 1)},
	}, {
		name:  "keys the caller may not read are skipped and not counted",
		acc:   same(store{"a/1": live(b1, "1", 1), "b/1": live(b1, "2", 1), "a/2": live(b1, "3", 1)}),
		req:   kv.ListRequest{Limit: 2},
		allow: func(k string) bool { return k[0] == 'a' },
		items: []kv.ListItem{item("a/1", "1", 1), item("a/2", "3", 1)},
		more:  true, // the acceptors hold more keys: the caller cannot know they are not its
	}, {
		name:  "reserved keys are never listed",
		acc:   same(store{kv.ReservedPrefix + "auth": live(b1, "secret", 1), "a": live(b1, "va", 1)}),
		items: []kv.ListItem{item("a", "va", 1)},
	}, {
		name: "a reserved prefix lists its reserved keys, no others",
		acc: same(store{kv.ReservedPrefix + "auth": live(b1, "secret", 1), kv.LeaseKey(1): live(b1, "l1", 1),
			kv.LeaseKey(2): live(b1, "l2", 1), "a": live(b1, "va", 1)}),
		req:   kv.ListRequest{Prefix: kv.LeasePrefix, Limit: 10},
		items: []kv.ListItem{item(kv.LeaseKey(1), "l1", 1), item(kv.LeaseKey(2), "l2", 1)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			var mu sync.Mutex
			var reads []string
			read := func(_ context.Context, key string) (protocol.State, error) {
				mu.Lock()
				defer mu.Unlock()
				reads = append(reads, key)
				if tt.readAbsent {
					return protocol.State{}, nil
				}
				return protocol.State{Value: []byte("read"), Version: 7}, nil
			}
			l, err := New(cfg, threeNodes, tt.acc, read)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.req.Validate(kv.DefaultLimits); err != nil && !errors.Is(err, kv.ErrReservedKey) {
				t.Fatal(err)
			}
			allow := func(k string) (bool, error) { return tt.allow == nil || tt.allow(k), nil }
			var items []kv.ListItem
			more, err := l.List(context.Background(), tt.req, allow, func(it kv.ListItem) error { items = append(items, it); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if tt.readAbsent {
				reads = tt.reads
			}
			if !reflect.DeepEqual(items, tt.items) || more != tt.more || !slices.Equal(reads, tt.reads) {
				t.Fatalf("List = %+v, more %v, reads %q; want %+v, more %v, reads %q", items, more, reads, tt.items, tt.more, tt.reads)
			}
		})
	}
}

func threeNodes() protocol.Config {
	ids := []protocol.NodeID{1, 2, 3}
	return protocol.Config{Version: 1, PrepareSet: ids, PrepareQuorum: 2, AcceptSet: ids, AcceptQuorum: 2}
}

func TestListNeedsAReadQuorum(t *testing.T) {
	l, err := New(DefaultConfig(), threeNodes, acceptors{1: store{"a": live(b1, "va", 1)}},
		func(context.Context, string) (protocol.State, error) { t.Fatal("read"); return protocol.State{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	req := kv.ListRequest{Limit: 10}
	_, err = l.List(context.Background(), req, func(string) (bool, error) { return true, nil }, func(kv.ListItem) error { return nil })
	if !errors.Is(err, kv.ErrNoQuorum) {
		t.Fatalf("List with one acceptor of three = %v, want ErrNoQuorum", err)
	}
}

func TestListRequestBounds(t *testing.T) {
	for _, tt := range []struct {
		req   kv.ListRequest
		limit int
		err   error
	}{
		{kv.ListRequest{}, kv.DefaultListLimit, nil},
		{kv.ListRequest{Limit: kv.MaxListLimit}, kv.MaxListLimit, nil},
		{kv.ListRequest{Limit: kv.MaxListLimit + 1}, 0, kv.ErrBadListRequest},
		{kv.ListRequest{Limit: -1}, 0, kv.ErrBadListRequest},
		{kv.ListRequest{Prefix: kv.ReservedPrefix}, 0, kv.ErrReservedKey},
	} {
		req := tt.req
		err := req.Validate(kv.DefaultLimits)
		if !errors.Is(err, tt.err) || (err == nil && req.Limit != tt.limit) {
			t.Errorf("Validate(%+v) = %v, limit %d; want %v, limit %d", tt.req, err, req.Limit, tt.err, tt.limit)
		}
	}
}

// countingAcceptors counts scans, and runs onScan (if set) before each.
type countingAcceptors struct {
	acceptors
	mu     sync.Mutex
	scans  map[protocol.NodeID]int
	onScan func()
}

func (c *countingAcceptors) Scan(ctx context.Context, id protocol.NodeID, r Range) (protocol.ListReply, error) {
	c.mu.Lock()
	c.scans[id]++
	if c.onScan != nil {
		c.onScan()
	}
	c.mu.Unlock()
	return c.acceptors.Scan(ctx, id, r)
}

// A round whose node changes configuration while it runs is asked again
// under the new one (protocol.ListRoundStale): here the change replaces
// every acceptor, and only the new ones hold the key's current state.
func TestListAsksAgainAfterAConfigurationChange(t *testing.T) {
	old := store{"a": live(b1, "old", 1)}
	cur := store{"a": live(b2, "new", 2)}
	var mu sync.Mutex
	conf := threeNodes()
	config := func() protocol.Config { mu.Lock(); defer mu.Unlock(); return conf }
	acc := &countingAcceptors{acceptors: acceptors{1: old, 2: old, 3: old, 4: cur, 5: cur, 6: cur}, scans: make(map[protocol.NodeID]int)}
	acc.onScan = func() {
		mu.Lock()
		defer mu.Unlock()
		ids := []protocol.NodeID{4, 5, 6}
		conf = protocol.Config{Version: 2, PrepareSet: ids, PrepareQuorum: 2, AcceptSet: ids, AcceptQuorum: 2}
	}
	l, err := New(DefaultConfig(), config, acc, func(context.Context, string) (protocol.State, error) {
		t.Fatal("read")
		return protocol.State{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var items []kv.ListItem
	if _, err := l.List(context.Background(), kv.ListRequest{Limit: 10}, func(string) (bool, error) { return true, nil },
		func(it kv.ListItem) error { items = append(items, it); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []kv.ListItem{{Key: "a", Value: []byte("new"), Version: 2}}
	if !reflect.DeepEqual(items, want) {
		t.Fatalf("List = %+v, want %+v (the round asked before the change was merged)", items, want)
	}
	acc.mu.Lock()
	defer acc.mu.Unlock()
	if acc.scans[4]+acc.scans[5]+acc.scans[6] < 2 { // a read quorum of them, at least
		t.Fatalf("scans %v: the round was not asked again of the new configuration's acceptors", acc.scans)
	}
}
