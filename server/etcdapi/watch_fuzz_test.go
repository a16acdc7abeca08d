package etcdapi

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// FuzzWatchCreate decodes bytes as a WatchRequest, as the gRPC server does
// with a client's bytes, and checks a create with checkCreate: it never
// panics, and what it accepts is what the watch can honour: no
// negative revision, one client key within the limit, or a prefix whose
// range_end is its end (or everything); a filter set only from the
// request's filters, and prev_kv as asked.
func FuzzWatchCreate(f *testing.F) {
	for _, r := range []*etcdpb.WatchCreateRequest{
		{Key: []byte("k")},
		{Key: []byte("p/"), RangeEnd: []byte("p0"), StartRevision: 3, ProgressNotify: true},
		{Key: []byte{0}, RangeEnd: []byte{0}},
		{Key: []byte{}, RangeEnd: []byte{0}, Filters: []etcdpb.WatchCreateRequest_FilterType{etcdpb.WatchCreateRequest_NOPUT, etcdpb.WatchCreateRequest_NODELETE}},
		{Key: []byte{0xff, 0xff}, RangeEnd: []byte{0}},
		{Key: []byte("k"), PrevKv: true, StartRevision: -1},
		{Key: []byte("p/"), RangeEnd: []byte("p0"), PrevKv: true},
		{Key: []byte("\x00lease/1")},
	} {
		b, err := proto.Marshal(&etcdpb.WatchRequest{RequestUnion: &etcdpb.WatchRequest_CreateRequest{CreateRequest: r}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := New(Config{}, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		var w etcdpb.WatchRequest
		if proto.Unmarshal(data, &w) != nil || w.GetCreateRequest() == nil {
			return
		}
		r := w.GetCreateRequest()
		sp, err := s.checkCreate(r)
		if err != nil {
			return
		}
		switch {
		case sp.prevKV != r.GetPrevKv():
			t.Fatalf("prev_kv %v for %v", sp.prevKV, r)
		case sp.start < 0 || sp.start != r.GetStartRevision():
			t.Fatalf("start %d accepted for %v", sp.start, r)
		case sp.prefix && sp.key == "":
			if !bytes.Equal(r.GetRangeEnd(), []byte{0}) || len(r.GetKey()) > 1 || (len(r.GetKey()) == 1 && r.GetKey()[0] != 0) {
				t.Fatalf("everything accepted for %v", r)
			}
		case kv.CheckClientKey(sp.key) != nil || len(sp.key) > s.cfg.Limits.MaxKeyBytes || sp.key != string(r.GetKey()):
			t.Fatalf("key %q accepted for %v", sp.key, r)
		case !sp.prefix && (len(r.GetRangeEnd()) != 0 || sp.key == ""):
			t.Fatalf("a key watch accepted for %v", r)
		case sp.prefix && !bytes.Equal(r.GetRangeEnd(), prefixEnd(r.GetKey())):
			t.Fatalf("a prefix watch accepted for range end %q of %q", r.GetRangeEnd(), r.GetKey())
		}
		var noPut, noDelete bool
		for _, fl := range r.GetFilters() {
			noPut = noPut || fl == etcdpb.WatchCreateRequest_NOPUT
			noDelete = noDelete || fl == etcdpb.WatchCreateRequest_NODELETE
		}
		if sp.noPut != noPut || sp.noDelete != noDelete || sp.progress != r.GetProgressNotify() {
			t.Fatalf("filters %+v for %v", sp, r)
		}
	})
}
