package sim

import (
	"maps"

	"github.com/caspaxos/caspaxos/protocol"
)

// disk is one node's storage: acceptor registers, the acceptor's ceiling
// (PROTOCOL.md §12) and the proposer's ballot ceiling. It keeps synced and unsynced writes apart. Writes go to the
// pending (unsynced) layer; a sync covers every write pending when it starts
// (group commit) and, when it completes, moves them to the synced layer. A
// crash keeps the synced layer and loses the rest.
//
// Writes are numbered in order (seq, from 1); "write s is synced" is
// s <= syncedSeq, which is how replies and Readys wait for their writes.
type disk struct {
	synced        map[string]protocol.Register
	syncedCeiling uint64
	syncedAge     uint64                     // the proposer's age (deletion GC)
	syncedConfig  protocol.Config            // the proposer's configuration (membership)
	syncedFence   map[protocol.NodeID]uint64 // the acceptor's age fence per proposer
	// The acceptor's ceiling (§12): the highest asked for (pending or
	// synced) and the seq of its write, and the synced one.
	accCeiling       uint64
	accCeilingSeq    uint64
	syncedAccCeiling uint64
	// floor is the acceptor's floor (§12), set when it starts from
	// syncedAccCeiling; it is not written.
	floor     uint64
	fence     map[protocol.NodeID]uint64   // synced with pending on top
	view      map[string]protocol.Register // synced with pending on top: what Step sees
	pending   []write
	done      []write           // the last sync's writes (finishSync)
	lastWrite map[string]uint64 // seq of each key's latest write, if not lost
	nextSeq   uint64
	syncedSeq uint64
	syncing   bool   // a sync is in flight ...
	syncUpTo  uint64 // ... and covers the writes up to this seq
}

// write is one pending write: a register, or the ceiling if isCeiling, or
// (deletion GC) the proposer's age, the acceptor's fence, or the removal of
// key's register.
type write struct {
	seq       uint64
	isCeiling bool
	key       string
	reg       protocol.Register
	ceiling   uint64
	isAge     bool
	age       uint64
	fence     map[protocol.NodeID]uint64 // the whole fence, if not nil
	remove    bool
	isConfig  bool
	config    protocol.Config
	isAccCeil bool // the acceptor's ceiling, in ceiling
}

// isRegister reports whether w writes (or removes) a register.
func (w write) isRegister() bool {
	return !w.isCeiling && !w.isAge && w.fence == nil && !w.isConfig && !w.isAccCeil
}

func newDisk() *disk {
	return &disk{
		synced:      make(map[string]protocol.Register),
		syncedFence: make(map[protocol.NodeID]uint64),
		fence:       make(map[protocol.NodeID]uint64),
		view:        make(map[string]protocol.Register),
		lastWrite:   make(map[string]uint64),
		nextSeq:     1,
	}
}

// get returns the register for key as the acceptor's last Step left it,
// synced or not (the acceptor's duty 1).
func (d *disk) get(key string) protocol.Register { return d.view[key] }

// put writes reg for key to the pending layer and returns the write's seq.
func (d *disk) put(key string, reg protocol.Register) uint64 {
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, key: key, reg: reg})
	d.view[key] = reg
	d.lastWrite[key] = seq
	return seq
}

// putCeiling writes the proposer's ceiling to the pending layer.
func (d *disk) putCeiling(c uint64) uint64 {
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, isCeiling: true, ceiling: c})
	return seq
}

// raiseAccCeiling makes sure a durable acceptor ceiling of at least need
// is on its way (§12): it writes RaiseCeiling(need, step) to the pending
// layer if no ceiling that high was asked for yet. It returns the seq a
// reply must wait for (0: the synced ceiling covers need already) and
// whether it wrote.
func (d *disk) raiseAccCeiling(need, step uint64) (wait uint64, wrote bool) {
	if need <= d.syncedAccCeiling {
		return 0, false
	}
	if need > d.accCeiling {
		d.accCeiling = protocol.RaiseCeiling(need, step)
		d.accCeilingSeq = d.take()
		d.pending = append(d.pending, write{seq: d.accCeilingSeq, isAccCeil: true, ceiling: d.accCeiling})
		wrote = true
	}
	return d.accCeilingSeq, wrote
}

// putAge writes the proposer's age to the pending layer.
func (d *disk) putAge(age uint64) uint64 {
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, isAge: true, age: age})
	return seq
}

// putFence raises the acceptor's fence to ages (per proposer, keeping the
// higher) in the pending layer; the acceptor fences by it at once.
func (d *disk) putFence(ages map[protocol.NodeID]uint64) uint64 {
	for id, a := range ages {
		d.fence[id] = max(d.fence[id], a)
	}
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, fence: maps.Clone(d.fence)})
	return seq
}

// putConfig writes the proposer's configuration to the pending layer.
func (d *disk) putConfig(c protocol.Config) uint64 {
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, isConfig: true, config: c.Clone()})
	return seq
}

// wipe loses the acceptor's registers, fences and ceiling (a lost disk;
// call it while the node is down).
func (d *disk) wipe() {
	d.accCeiling, d.accCeilingSeq, d.syncedAccCeiling = 0, 0, 0
	clear(d.synced)
	clear(d.view)
	clear(d.lastWrite)
	d.syncedFence = make(map[protocol.NodeID]uint64)
	d.fence = make(map[protocol.NodeID]uint64)
}

// remove deletes key's register in the pending layer.
func (d *disk) remove(key string) uint64 {
	seq := d.take()
	d.pending = append(d.pending, write{seq: seq, key: key, remove: true})
	delete(d.view, key)
	d.lastWrite[key] = seq
	return seq
}

func (d *disk) take() uint64 {
	seq := d.nextSeq
	d.nextSeq++
	return seq
}

// isSynced reports whether the write numbered seq is synced (0: no write).
func (d *disk) isSynced(seq uint64) bool { return seq <= d.syncedSeq }

// beginSync starts a sync of every pending write, if there are any and no
// sync is in flight; it reports whether it did.
func (d *disk) beginSync() bool {
	if d.syncing || len(d.pending) == 0 {
		return false
	}
	d.syncing = true
	d.syncUpTo = d.pending[len(d.pending)-1].seq
	return true
}

// finishSync completes the sync in flight and returns the writes it made
// durable, oldest first: valid until the next finishSync, which reuses
// them (as the pending layer's buffer is reused: the writes left pending
// move to its front, so that a long run does not allocate a new buffer
// every few syncs).
func (d *disk) finishSync() []write {
	n := 0
	for n < len(d.pending) && d.pending[n].seq <= d.syncUpTo {
		w := d.pending[n]
		switch {
		case w.isCeiling:
			d.syncedCeiling = w.ceiling
		case w.isAge:
			d.syncedAge = w.age
		case w.isConfig:
			d.syncedConfig = w.config
		case w.isAccCeil:
			d.syncedAccCeiling = max(d.syncedAccCeiling, w.ceiling)
		case w.fence != nil:
			d.syncedFence = w.fence
		case w.remove:
			delete(d.synced, w.key)
		default:
			d.synced[w.key] = w.reg
		}
		n++
	}
	d.done = append(d.done[:0], d.pending[:n]...)
	rest := copy(d.pending, d.pending[n:])
	clear(d.pending[rest:])
	d.pending = d.pending[:rest]
	d.syncedSeq = d.syncUpTo
	d.syncing = false
	return d.done
}

// crash loses everything not synced, and the sync in flight.
func (d *disk) crash() {
	d.pending = nil
	d.syncing = false
	clear(d.view)
	for k, r := range d.synced {
		d.view[k] = r
	}
	d.fence = maps.Clone(d.syncedFence)
	d.accCeiling, d.accCeilingSeq = d.syncedAccCeiling, 0
	for k, seq := range d.lastWrite {
		if seq > d.syncedSeq {
			delete(d.lastWrite, k) // lost: nothing left to wait for
		}
	}
}
