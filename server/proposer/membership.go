package proposer

import (
	"context"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
)

// Membership change on one proposer (PROTOCOL.md §8; see membership.go).

// SetConfig replaces the acceptor configuration of the proposer
// (protocol.Proposer.SetConfig): new attempts use c at once, attempts in
// flight finish with theirs. A configuration whose version is not newer
// than the current one is refused with an error, and so is an invalid one.
func (p *Proposer) SetConfig(ctx context.Context, c protocol.Config) error {
	var err error
	if aerr := p.onDriver(ctx, func(core *protocol.Proposer) { err = core.SetConfig(c) }); aerr != nil {
		return aerr
	}
	return err
}

// Config returns the acceptor configuration the proposer uses.
func (p *Proposer) Config(ctx context.Context) (protocol.Config, error) {
	var c protocol.Config
	err := p.onDriver(ctx, func(core *protocol.Proposer) { c = core.Config() })
	return c, err
}

// Settled reports whether no attempt in flight on this proposer still uses
// a configuration older than version (protocol.Proposer.Settled).
func (p *Proposer) Settled(ctx context.Context, version uint64) (bool, error) {
	var ok bool
	err := p.onDriver(ctx, func(core *protocol.Proposer) { ok = core.Config().Version >= version && core.Settled(version) })
	return ok, err
}

// onDriver runs fn on the driver goroutine, the only one that touches the
// core. server.ErrStopped if the driver stopped first, ctx's error if ctx ended.
func (p *Proposer) onDriver(ctx context.Context, fn func(*protocol.Proposer)) error {
	done := make(chan struct{})
	wrapped := func(core *protocol.Proposer) { fn(core); close(done) }
	if err := ctx.Err(); err != nil { // select picks at random among ready cases
		return err
	}
	select {
	case p.admin <- wrapped:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return server.ErrStopped
	}
	<-done // run synchronously by the driver once taken
	return nil
}

// Rewrite is the membership catch-up (PROTOCOL.md §8 step 3) for each key:
// the identity change that always sends its accept, through the
// configuration in use. Results are in the order of keys; Err nil means the
// key's state is now accepted by an accept quorum of that configuration.
func (p *Proposer) Rewrite(ctx context.Context, keys []string) []protocol.Result {
	return p.identityEach(ctx, keys, func(c *call) { c.force = true })
}
