package storage

import (
	"slices"
	"sync"
)

// pendingWrites tracks the Pebble keys of writes that are committed but
// may not be synced yet, so that readers can wait for them.
//
// Why: Pebble publishes a batch to readers as soon as it is in the memtable,
// and only then waits for the fsync of its WAL. A Get racing with an Apply
// of the same key could read the new register and answer with it; if the
// node then crashed before the fsync, the answer would describe a register
// that no longer exists. The Store contract forbids that, so:
//
//  1. A writer adds its keys, with a channel of its own, before it commits.
//  2. It removes them and closes the channel after the commit returned,
//     synced or failed; a failure has stopped the store before that.
//  3. A reader reads first, then waits for every channel registered on the
//     key at that moment, then checks that the store did not stop.
//
// A reader that saw a write's data saw it after step 1 of that write, so
// the write is either still registered at step 3 (the reader waits for it)
// or already finished. Writes registered after the read are waited for
// needlessly, at worst one fsync. Each write has its own channel, so a
// stream of writes to one key cannot starve a reader.
type pendingWrites struct {
	mu    sync.Mutex
	byKey map[string][]chan struct{}
}

// add registers done on every key.
func (p *pendingWrites) add(keys []string, done chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey == nil {
		p.byKey = make(map[string][]chan struct{})
	}
	for _, k := range keys {
		p.byKey[k] = append(p.byKey[k], done)
	}
}

// finish unregisters done from every key and closes it.
func (p *pendingWrites) finish(keys []string, done chan struct{}) {
	p.mu.Lock()
	for _, k := range keys {
		waiters := slices.DeleteFunc(p.byKey[k], func(c chan struct{}) bool { return c == done })
		if len(waiters) == 0 {
			delete(p.byKey, k)
		} else {
			p.byKey[k] = waiters
		}
	}
	p.mu.Unlock()
	close(done)
}

// wait returns once every write registered on key when it is called has
// finished.
func (p *pendingWrites) wait(key string) {
	p.mu.Lock()
	waiters := slices.Clone(p.byKey[key])
	p.mu.Unlock()
	for _, c := range waiters {
		<-c
	}
}
