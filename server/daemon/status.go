package daemon

import (
	"context"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/status"
	"github.com/caspaxos/caspaxos/storage"
)

// maxStatusQueued bounds the GC queue items a status call counts.
const maxStatusQueued = 1 << 20

// newStatus builds the node's status sampler (GET /v1/status, `caspaxos
// status`, the status page) over its parts; the caller starts it.
func (d *Daemon) newStatus() *status.Sampler {
	return status.NewSampler(d.cfg.Status, status.Sources{
		Name: d.cfg.Name, ID: uint64(d.id), DataDir: d.cfg.DataDir,
		Health: d.Health,
		Members: func(ctx context.Context) (uint64, []status.Member, error) {
			m := d.membersWithout()
			var out []status.Member
			for _, mb := range m.Members {
				out = append(out, status.Member{Name: mb.Name, ID: mb.ID, Reachable: mb.Reachable})
			}
			return m.ConfigVersion, out, nil
		},
		RTT: func() map[uint64]time.Duration {
			out := map[uint64]time.Duration{}
			for id, rtt := range d.tr.Stats().RTT {
				out[uint64(id)] = rtt
			}
			return out
		},
		Store: func() (uint64, uint64) {
			sp, err := d.store.Space()
			if err != nil {
				return 0, 0
			}
			return sp.StoreBytes, sp.AvailBytes
		},
		WALSyncs: func() [storage.SyncBuckets]uint64 { return d.store.Stats().WALSyncTimes },
		GC: func() (int, bool) {
			r := d.gc.Load()
			if r == nil {
				return 0, false
			}
			q, _ := r.Queued(maxStatusQueued)
			return q, true
		},
		Count:    d.countRegisters,
		Requests: d.metrics.Served,
	})
}

// countPage bounds the registers of one Scan, so that no iterator lives long.
const countPage = 1 << 14

// countRegisters counts the local store's registers and tombstones, a page
// at a time.
func (d *Daemon) countRegisters() (registers, tombstones uint64, err error) {
	start := ""
	for {
		n, next := 0, ""
		err := d.store.Scan(start, func(key string, reg protocol.Register) bool {
			if n == countPage {
				next = key
				return false
			}
			n++
			registers++
			if reg.State.Deleted {
				tombstones++
			}
			return true
		})
		if err != nil || next == "" {
			return registers, tombstones, err
		}
		start = next
	}
}

// statusJSON is HTTPConfig.Status.
func (d *Daemon) statusJSON(ctx context.Context) any { return d.status.Collect(ctx) }
