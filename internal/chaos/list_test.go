package chaos

import (
	"errors"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/internal/sim"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// A listed item is a read of its key over the page's call: the model must
// refuse one that shows a value the key did not have during the call, a
// deleted key's old value (the guarantee's "no deleted key is returned")
// or a collected key's.
func TestListedReadOfDeletedKeyIsRefused(t *testing.T) {
	put := sim.HistoryOp{Client: 0, Op: kv.Op{Kind: kv.OpPut, Key: "k", Value: []byte("v")}, Call: 0, Return: 10,
		State: protocol.State{Value: []byte("v"), Version: 1}}
	del := sim.HistoryOp{Client: 0, Op: kv.Op{Kind: kv.OpDelete, Key: "k"}, Call: 20, Return: 30,
		State: protocol.State{Version: 2, Deleted: true}}
	gc := sim.HistoryOp{Client: -1, Op: kv.Op{Key: "k"}, GC: true, Call: 40, Return: 50}
	item := func(call, ret int64) sim.HistoryOp {
		return sim.HistoryOp{Client: listClient(1), Op: kv.Op{Kind: kv.OpGet, Key: "k"}, Call: call, Return: ret,
			State: protocol.State{Value: []byte("v"), Version: 1}}
	}
	tests := []struct {
		name string
		ops  []sim.HistoryOp
		ok   bool
	}{
		{"listed while live", []sim.HistoryOp{put, del, item(12, 18)}, true},
		{"listed across the delete", []sim.HistoryOp{put, del, item(15, 25)}, true},
		{"listed after the delete", []sim.HistoryOp{put, del, item(32, 38)}, false},
		{"listed after the collection", []sim.HistoryOp{put, del, gc, item(55, 60)}, false},
		{"listed before the put", []sim.HistoryOp{item(-5, -1), put}, false},
	}
	for _, tt := range tests {
		err := sim.CheckHistory(tt.ops, 10*time.Second)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, sim.ErrNotLinearizable)) {
			t.Errorf("%s: CheckHistory = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestLiveThroughout(t *testing.T) {
	put := func(call, ret int64) sim.HistoryOp {
		return sim.HistoryOp{Op: kv.Op{Kind: kv.OpPut, Key: "k"}, Call: call, Return: ret}
	}
	del := func(call, ret int64) sim.HistoryOp {
		return sim.HistoryOp{Op: kv.Op{Kind: kv.OpDelete, Key: "k"}, Call: call, Return: ret}
	}
	unknown := func(op sim.HistoryOp) sim.HistoryOp { op.Unknown, op.Return = true, 1<<62; return op }
	refused := func(op sim.HistoryOp) sim.HistoryOp { op.Err = kv.ErrNotFound; return op }
	tests := []struct {
		name string
		ops  []sim.HistoryOp
		live bool
	}{
		{"written before", []sim.HistoryOp{put(0, 10)}, true},
		{"written during", []sim.HistoryOp{put(90, 110)}, false},
		{"written of unknown outcome", []sim.HistoryOp{unknown(put(0, 10))}, false},
		{"deleted before, written after", []sim.HistoryOp{del(0, 5), put(10, 20)}, true},
		{"written, then deleted before", []sim.HistoryOp{put(0, 10), del(20, 30)}, false},
		{"delete overlapping the write", []sim.HistoryOp{put(0, 10), del(5, 8)}, false},
		{"deleted during", []sim.HistoryOp{put(0, 10), del(120, 130)}, false},
		{"deleted after", []sim.HistoryOp{put(0, 10), del(250, 260)}, true},
		{"delete of unknown outcome before", []sim.HistoryOp{unknown(del(0, 1)), put(10, 20)}, false},
		{"refused delete", []sim.HistoryOp{put(0, 10), refused(del(120, 130))}, true},
		{"a later write after a delete", []sim.HistoryOp{put(0, 10), del(20, 30), put(40, 50)}, true},
	}
	for _, tt := range tests {
		if got := liveThroughout(tt.ops, 100, 200); got != tt.live {
			t.Errorf("%s: liveThroughout = %v, want %v", tt.name, got, tt.live)
		}
	}
}
