package membership

import (
	"context"
	"fmt"
)

// checkEmptyJoiner refuses, for now, to let a joining acceptor that holds
// registers into a configuration without a catch-up first (the grow from
// an even number of acceptors to an odd one). Its registers are stale: they
// are harmless while the other acceptors hold newer ones, but a key that
// deletion GC removed from them meanwhile would show the stale register as
// the newest a prepare finds, and its old value would come back (the
// simulator found this; PROTOCOL.md §8, §9). A grow from odd to even
// rewrites the joiner's keys in its catch-up, so it needs no such check.
//
// The error is not final: the change keeps retrying and shows it in its
// status, and goes on once the joiner was restarted on an empty data
// directory (serve --join).
func (c *Controller) checkEmptyJoiner(ctx context.Context, ch *Change) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	keys, err := c.peers.ScanKeys(ctx, ch.Target, "", 1)
	if err != nil {
		return fmt.Errorf("checking that %s holds no registers: %w", ch.Target.Name, err)
	}
	if len(keys) > 0 {
		return fmt.Errorf("%s holds registers from before (first key %q): restart it on an empty data directory with --join; a stale register could bring back a key deletion GC removed", ch.Target.Name, keys[0])
	}
	return nil
}
