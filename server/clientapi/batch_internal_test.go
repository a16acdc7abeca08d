package clientapi

import (
	"context"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// stubStream is the part of a Batch stream waitRoom uses.
type stubStream struct {
	caspaxospb.KV_BatchServer
	ctx context.Context
}

func (s stubStream) Context() context.Context { return s.ctx }

// waitRoom lets a stream take an op only while it is within both bounds,
// and lets it go on once results left (room) or stops it when the stream
// ends.
func TestBatchWaitRoom(t *testing.T) {
	cfg := GRPCConfig{MaxBatchInflightOps: 10, MaxBatchQueuedBytes: 1000}
	tests := []struct {
		name   string
		taken  int
		queued int64
		room   bool // within the bounds
	}{
		{"empty", 0, 0, true},
		{"below both", 9, 999, true},
		{"ops bound", 10, 0, false},
		{"bytes bound", 1, 1000, false},
		{"bytes past bound", 1, 5000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g := &grpcAPI{cfg: cfg, draining: make(chan struct{})}
			b := &batchStream{g: g, s: stubStream{ctx: ctx}, room: make(chan struct{}, 1), quit: make(chan struct{}),
				taken: tt.taken, queued: tt.queued}
			got := make(chan bool, 1)
			go func() { got <- b.waitRoom() }()
			if tt.room {
				if ok := <-got; !ok {
					t.Fatal("waitRoom refused a stream within its bounds")
				}
				return
			}
			select {
			case <-got:
				t.Fatalf("waitRoom let a stream at taken %d, queued %d take an op (bounds %d ops, %d bytes)",
					tt.taken, tt.queued, cfg.MaxBatchInflightOps, cfg.MaxBatchQueuedBytes)
			case <-time.After(50 * time.Millisecond):
			}
			// Results leave: it goes on.
			b.mu.Lock()
			b.taken, b.queued = 0, 0
			b.mu.Unlock()
			b.room <- struct{}{}
			if ok := <-got; !ok {
				t.Fatal("waitRoom refused after results left")
			}
			// At a bound again, the stream ends: it stops.
			b.taken = cfg.MaxBatchInflightOps
			go func() { got <- b.waitRoom() }()
			cancel()
			if ok := <-got; ok {
				t.Fatal("waitRoom took an op on an ended stream")
			}
		})
	}
}
