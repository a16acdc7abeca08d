package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// FuzzDecodeRequests: a request table either decodes, and then its
// encoding decodes to the same table, or it fails with ErrRequests and
// returns nothing. What decodes respects the bounds. ValidateRequests
// accepts exactly what decodes; the readers that work on the encoding
// without decoding it (FindRequest, spliceRequests, newestRequest) agree
// with the decoded table's methods.
func FuzzDecodeRequests(f *testing.F) {
	f.Add(EncodeRequests(fullTable(1000)))
	f.Add([]byte(nil))
	f.Add(EncodeRequests(RequestTable{}))
	f.Add(EncodeRequests(RequestTable{Horizon: 1700000000000, Records: []RequestRecord{
		{ID: "a", Outcome: RequestApplied, Version: 7, IssuedMillis: 1700000000100, Value: []byte("-12")},
		{ID: "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", Outcome: RequestNotApplied, IssuedMillis: -1},
	}}))
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{1, 0, 1, 1, 'x', 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := DecodeRequests(b)
		n, verr := ValidateRequests(b)
		if (err == nil) != (verr == nil) || (err == nil && n != len(tab.Records)) {
			t.Fatalf("decode: %v, %d records; validate: %v, %d records", err, len(tab.Records), verr, n)
		}
		if err != nil {
			if !errors.Is(err, ErrRequests) || !reflect.DeepEqual(tab, RequestTable{}) {
				t.Fatalf("decode failed with %v and %+v, want ErrRequests and nothing", err, tab)
			}
			return
		}
		checkEncodedReaders(t, b, tab)
		if len(tab.Records) > MaxRequestRecords {
			t.Fatalf("%d records decoded", len(tab.Records))
		}
		seen := map[string]bool{}
		for _, r := range tab.Records {
			if r.ID == "" || len(r.ID) > MaxRequestIDBytes || seen[r.ID] || (r.Outcome != RequestApplied && r.Outcome != RequestNotApplied) {
				t.Fatalf("record out of bounds decoded: %+v", r)
			}
			seen[r.ID] = true
		}
		again, err := DecodeRequests(EncodeRequests(tab))
		if err != nil || !reflect.DeepEqual(again, tab) {
			t.Fatalf("%+v re-encoded decodes to %+v, %v", tab, again, err)
		}
	})
}

func TestRequestCheck(t *testing.T) {
	w := RequestWindow{WindowMillis: 600_000, SkewMillis: 500}
	now := int64(10_000_000)
	tab := RequestTable{Horizon: now - 700_000, Records: []RequestRecord{{ID: "seen", Outcome: RequestApplied, Version: 3, IssuedMillis: now - 1000}}}
	for _, tc := range []struct {
		name   string
		tab    RequestTable
		id     string
		issued int64
		want   RequestVerdict
	}{
		{"known, whatever its age", tab, "seen", 0, RequestSeen},
		{"new", tab, "new", now - 1000, RequestNew},
		{"new, within skew ahead", tab, "new", now + 500, RequestNew},
		{"from the future", tab, "new", now + 501, RequestFromFuture},
		{"older than the window", tab, "new", now - 600_001, RequestTooOld},
		{"at the window's edge", RequestTable{}, "new", now - 600_000, RequestNew},
		{"before the horizon", RequestTable{Horizon: now - 1000}, "new", now - 1001, RequestTooOld},
		{"at the horizon", RequestTable{Horizon: now - 1000}, "new", now - 1000, RequestNew},
		{"horizon ahead of the proposer's clock", RequestTable{Horizon: now + 400}, "new", now + 399, RequestTooOld},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got, err := RequestCheck(State{Requests: EncodeRequests(tc.tab)}, tc.id, tc.issued, now, w); err != nil || got != tc.want {
				t.Fatalf("verdict %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestRequestTablePruneAndEvict: every record removed, by pruning or by
// eviction from a full table, was recorded before the horizon (the
// invariant RequestCheck's safety rests on): the horizon passes them.
func TestRequestTablePruneAndEvict(t *testing.T) {
	var tab RequestTable
	for i := range MaxRequestRecords + 10 {
		tab = tab.With(RequestRecord{ID: string(rune('a'+i%26)) + string(rune(i)), Outcome: RequestApplied, IssuedMillis: int64(1000 + i)})
	}
	if len(tab.Records) != MaxRequestRecords {
		t.Fatalf("%d records, want the limit %d", len(tab.Records), MaxRequestRecords)
	}
	if tab.Horizon != 1010 {
		t.Fatalf("horizon %d after evicting 10, want 1010", tab.Horizon)
	}
	p := tab.Prune(1100)
	if p.Horizon != 1100 || len(p.Records) != MaxRequestRecords+10-100 {
		t.Fatalf("pruned to %d records, horizon %d", len(p.Records), p.Horizon)
	}
	if q := p.Prune(5); q.Horizon != 1100 {
		t.Fatalf("prune lowered the horizon to %d", q.Horizon)
	}
	if len(tab.Records) != MaxRequestRecords {
		t.Fatal("Prune changed its receiver")
	}
}

// TestApplyRecordsRequest: apply records a write's request with the
// version it gives, keeps the table across writes without one and across
// a delete, and records an outcome alone with WriteKeep.
func TestApplyRecordsRequest(t *testing.T) {
	empty := RequestTable{}
	s, err := apply(State{}, Write{Kind: WriteSet, Value: []byte("a"), Table: &empty, Record: RequestRecord{ID: "r1", Outcome: RequestApplied, IssuedMillis: 5}}, 9)
	if err != nil || s.Version != 9 {
		t.Fatalf("first write: %v, %v", s, err)
	}
	tab, _ := DecodeRequests(s.Requests)
	if r, ok := tab.Find("r1"); !ok || r.Version != 9 {
		t.Fatalf("record %+v, %v; want version 9", r, ok)
	}
	s2, _ := apply(s, Write{Kind: WriteSet, Value: []byte("b")}, 10)
	s3, _ := apply(s2, Write{Kind: WriteDelete}, 11)
	if s3.Version != 11 || !s3.Deleted || string(s3.Requests) != string(s.Requests) {
		t.Fatalf("table not kept through a write and a delete: %+v", s3)
	}
	s4, _ := apply(s3, Write{Kind: WriteKeep, Table: &tab, Record: RequestRecord{ID: "q", Outcome: RequestNotApplied, IssuedMillis: 6}}, 12)
	t4, _ := DecodeRequests(s4.Requests)
	if r, ok := t4.Find("q"); s4.Version != 11 || !s4.Deleted || !ok || r.Version != 0 {
		t.Fatalf("outcome recorded alone: %+v, %+v", s4, r)
	}
	if !RequestsHeld(s4, 6+1000, RequestWindow{WindowMillis: 1000}) || RequestsHeld(s4, 6+1001, RequestWindow{WindowMillis: 1000}) {
		t.Fatal("RequestsHeld: a tombstone must be held up to window past its newest record, and no longer")
	}
}

// checkEncodedReaders checks the readers of an encoded table b against
// the methods of its decoded form tab.
func checkEncodedReaders(t *testing.T, b []byte, tab RequestTable) {
	t.Helper()
	for _, r := range append(tab.Records, RequestRecord{ID: "absent"}) {
		want, wantOK := tab.Find(r.ID)
		got, ok, horizon, err := FindRequest(b, r.ID)
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) || horizon != tab.Horizon {
			t.Fatalf("FindRequest(%q) = %+v, %v, horizon %d, %v; want %+v, %v, horizon %d", r.ID, got, ok, horizon, err, want, wantOK, tab.Horizon)
		}
	}
	if len(b) > 0 {
		if newest, err := newestRequest(b); err != nil || newest != tab.Newest() {
			t.Fatalf("newestRequest = %d, %v; want %d", newest, err, tab.Newest())
		}
	}
	// Splice a new record in at cutoffs below, among and above the
	// records' issue times.
	cutoffs := []int64{tab.Horizon - 1, tab.Horizon, tab.Newest(), tab.Newest() + 1}
	for i, r := range tab.Records {
		if i%7 == 0 {
			cutoffs = append(cutoffs, r.IssuedMillis, r.IssuedMillis+1)
		}
	}
	add := RequestRecord{ID: "spliced", Outcome: RequestApplied, Version: 9, IssuedMillis: tab.Newest(), Value: []byte("3")}
	if _, dup := tab.Find(add.ID); dup {
		return
	}
	var x *requestIndex
	if len(b) > 0 {
		var err error
		if x, err = indexRequests(b); err != nil {
			t.Fatalf("indexRequests: %v", err)
		}
		checkIndexed(t, State{Requests: b, index: x}, tab)
	}
	for _, c := range cutoffs {
		if x != nil {
			want, _ := spliceRequests(b, c, add)
			got, gx := spliceIndexed(x, c, add)
			if !bytes.Equal(got, want) {
				t.Fatalf("spliceIndexed at cutoff %d: %x, want %x", c, got, want)
			}
			if fresh, err := indexRequests(got); err != nil || !reflect.DeepEqual(gx, fresh) {
				t.Fatalf("spliceIndexed at cutoff %d left the index %+v, want %+v (%v)", c, gx, fresh, err)
			}
		}
		want := tab.Prune(c).With(add)
		sb, err := spliceRequests(b, c, add)
		if err != nil {
			t.Fatalf("spliceRequests at cutoff %d: %v", c, err)
		}
		got, err := DecodeRequests(sb)
		if err != nil || !reflect.DeepEqual(normal(got), normal(want)) {
			t.Fatalf("spliceRequests at cutoff %d decodes to %+v, %v; want %+v", c, got, err, want)
		}
	}
}

// normal makes empty slices nil, for comparisons.
func normal(t RequestTable) RequestTable {
	if len(t.Records) == 0 {
		t.Records = nil
	}
	for i := range t.Records {
		if len(t.Records[i].Value) == 0 {
			t.Records[i].Value = nil
		}
	}
	return t
}

// fullTable is a table of MaxRequestRecords records whose issue times are
// spread, with ties, across span milliseconds, not in order.
func fullTable(span int64) RequestTable {
	tab := RequestTable{Horizon: 1_000}
	for i := range MaxRequestRecords {
		tab.Records = append(tab.Records, RequestRecord{
			ID: fmt.Sprintf("id-%d", i), Outcome: RequestOutcome(1 + i%2), Version: uint64(i),
			IssuedMillis: 1_000 + int64(i*7919)%span, Value: []byte(fmt.Sprint(i % 3)),
		})
	}
	return tab
}

// TestEncodedReadersOnFullTables: the readers that work on a table's
// encoding agree with its decoded form on full tables, where a write
// evicts (ties among the oldest included), and on tables being pruned.
func TestEncodedReadersOnFullTables(t *testing.T) {
	for _, span := range []int64{1, 10, 1000, 1 << 40} {
		tab := fullTable(span)
		checkEncodedReaders(t, EncodeRequests(tab), tab)
		half := RequestTable{Horizon: tab.Horizon, Records: tab.Records[:MaxRequestRecords/2]}
		checkEncodedReaders(t, EncodeRequests(half), half)
	}
	checkEncodedReaders(t, nil, RequestTable{})
}

// checkIndexed: findRequest through s's index answers as the table does.
func checkIndexed(t *testing.T, s State, tab RequestTable) {
	t.Helper()
	if indexOf(s) == nil {
		t.Fatal("the state's index does not describe its table")
	}
	for _, r := range append(tab.Records, RequestRecord{ID: "absent"}) {
		want, wantOK := tab.Find(r.ID)
		got, ok, horizon, err := findRequest(s, r.ID)
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) || horizon != tab.Horizon {
			t.Fatalf("findRequest(%q) through the index = %+v, %v, horizon %d, %v; want %+v, %v, horizon %d", r.ID, got, ok, horizon, err, want, wantOK, tab.Horizon)
		}
	}
}

// TestApplySplicesThroughIndex: a run of writes with request IDs, as a
// composed batch and the proposer's cache chain them, each state carrying
// the index its write left, records what the table's own rules (Prune,
// With) record, through eviction from a full table and pruning; a state
// that lost its index (copied without it) is indexed afresh.
func TestApplySplicesThroughIndex(t *testing.T) {
	var s State
	var tab RequestTable
	for i := range 3 * MaxRequestRecords {
		issued := int64(10_000 + i - 7*(i%5)) // not quite in order
		cutoff := int64(10_000 + i - 2000)
		r := RequestRecord{ID: fmt.Sprintf("req-%d", i), Outcome: RequestApplied, IssuedMillis: issued, Value: []byte("v")}
		next, err := apply(s, Write{Kind: WriteSet, Value: []byte("x"), PruneBelow: cutoff, Record: r}, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.Version = next.Version
		tab = tab.Prune(cutoff).With(r)
		s = next
		if i%97 == 0 {
			got, err := DecodeRequests(s.Requests)
			if err != nil || !reflect.DeepEqual(normal(got), normal(tab)) {
				t.Fatalf("write %d: the table is %d records, horizon %d (%v); want %d, horizon %d", i, len(got.Records), got.Horizon, err, len(tab.Records), tab.Horizon)
			}
			checkIndexed(t, s, tab)
			s = State{Value: s.Value, Version: s.Version, Requests: s.Requests, Created: s.Created} // the index is lost
		}
	}
}
