package etcdapi

import (
	"errors"
	"testing"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

func cmpOn(target etcdpb.Compare_CompareTarget, res etcdpb.Compare_CompareResult, n int64) *etcdpb.Compare {
	c := &etcdpb.Compare{Key: []byte("k"), Target: target, Result: res}
	switch target {
	case etcdpb.Compare_VERSION:
		c.TargetUnion = &etcdpb.Compare_Version{Version: n}
	case etcdpb.Compare_CREATE:
		c.TargetUnion = &etcdpb.Compare_CreateRevision{CreateRevision: n}
	case etcdpb.Compare_MOD:
		c.TargetUnion = &etcdpb.Compare_ModRevision{ModRevision: n}
	case etcdpb.Compare_LEASE:
		c.TargetUnion = &etcdpb.Compare_Lease{Lease: n}
	}
	return c
}

// TestCompareOutcome: compares against the mapping of doc.go, exact where
// the register knows its life's first version, answered only where every
// possible value agrees where it does not, and refused otherwise.
func TestCompareOutcome(t *testing.T) {
	const (
		EQ = etcdpb.Compare_EQUAL
		NE = etcdpb.Compare_NOT_EQUAL
		GT = etcdpb.Compare_GREATER
		LT = etcdpb.Compare_LESS
		V  = etcdpb.Compare_VERSION
		C  = etcdpb.Compare_CREATE
		M  = etcdpb.Compare_MOD
		L  = etcdpb.Compare_LEASE
	)
	absent := protocol.State{}
	tomb := protocol.State{Version: 9, Deleted: true}
	live := protocol.State{Value: []byte("v"), Version: 9, Created: 7} // version 3
	legacy := protocol.State{Value: []byte("v"), Version: 9}           // life began in [1, 9]
	tests := []struct {
		name    string
		cmp     *etcdpb.Compare
		st      protocol.State
		want    bool
		refused bool
	}{
		{"absent create = 0", cmpOn(C, EQ, 0), absent, true, false},
		{"tombstone create = 0", cmpOn(C, EQ, 0), tomb, true, false},
		{"tombstone mod = 0", cmpOn(M, EQ, 0), tomb, true, false},
		{"tombstone version > 0", cmpOn(V, GT, 0), tomb, false, false},
		{"live create = 7", cmpOn(C, EQ, 7), live, true, false},
		{"live create = 9", cmpOn(C, EQ, 9), live, false, false},
		{"live version = 3", cmpOn(V, EQ, 3), live, true, false},
		{"live version < 3", cmpOn(V, LT, 3), live, false, false},
		{"live mod = 9", cmpOn(M, EQ, 9), live, true, false},
		{"live mod > 8", cmpOn(M, GT, 8), live, true, false},
		{"live mod != 9", cmpOn(M, NE, 9), live, false, false},
		{"lease = 0", cmpOn(L, EQ, 0), live, true, false},
		{"lease = 5", cmpOn(L, EQ, 5), live, false, false},
		{"legacy create = 0", cmpOn(C, EQ, 0), legacy, false, false},
		{"legacy create > 0", cmpOn(C, GT, 0), legacy, true, false},
		{"legacy create != 0", cmpOn(C, NE, 0), legacy, true, false},
		{"legacy create <= mod: < 10", cmpOn(C, LT, 10), legacy, true, false},
		{"legacy create > 9", cmpOn(C, GT, 9), legacy, false, false},
		{"legacy create = 4", cmpOn(C, EQ, 4), legacy, false, true},
		{"legacy version = 1", cmpOn(V, EQ, 1), legacy, false, true},
		{"legacy version > 1", cmpOn(V, GT, 1), legacy, false, true},
		{"value on absent fails", &etcdpb.Compare{Key: []byte("k"), Target: etcdpb.Compare_VALUE, TargetUnion: &etcdpb.Compare_Value{}}, absent, false, false},
		{"value equal", &etcdpb.Compare{Key: []byte("k"), Target: etcdpb.Compare_VALUE, TargetUnion: &etcdpb.Compare_Value{Value: []byte("v")}}, live, true, false},
		{"value greater", &etcdpb.Compare{Key: []byte("k"), Target: etcdpb.Compare_VALUE, Result: GT, TargetUnion: &etcdpb.Compare_Value{Value: []byte("a")}}, live, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := compareOutcome(tc.cmp, tc.st)
			if tc.refused {
				if !errors.Is(err, errUnknowable) {
					t.Fatalf("got %v, %v; want a refusal", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestListStart: a range's listing starts where none of its keys is
// skipped, under the longest prefix they share.
func TestListStart(t *testing.T) {
	tests := []struct {
		key, end      string
		prefix, after string
	}{
		{"app/", "app0", "app/", "app."},
		{"a\xff", "b", "a", "a\xfe"},
		{"a", "apz", "a", "`"},
		{"\x00", "\x00", "", ""},
		{"m", "\x00", "", "l"},
		{"k\x00", "k\x01", "k\x00", "k"},
	}
	for _, tc := range tests {
		kr := keyRange{key: []byte(tc.key), end: []byte(tc.end)}
		prefix, after := kr.listStart()
		if prefix != tc.prefix || after != tc.after {
			t.Errorf("[%q, %q): prefix %q after %q, want %q and %q", tc.key, tc.end, prefix, after, tc.prefix, tc.after)
		}
		if !kr.contains(tc.key) && tc.key != "\x00" {
			t.Errorf("[%q, %q) does not contain its first key", tc.key, tc.end)
		}
	}
}
