package protocol

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeRequests: a request table either decodes, and then its
// encoding decodes to the same table, or it fails with ErrRequests and
// returns nothing. What decodes respects the bounds.
func FuzzDecodeRequests(f *testing.F) {
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
		if err != nil {
			if !errors.Is(err, ErrRequests) || !reflect.DeepEqual(tab, RequestTable{}) {
				t.Fatalf("decode failed with %v and %+v, want ErrRequests and nothing", err, tab)
			}
			return
		}
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
			if _, got := RequestCheck(tc.tab, tc.id, tc.issued, now, w); got != tc.want {
				t.Fatalf("verdict %d, want %d", got, tc.want)
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
