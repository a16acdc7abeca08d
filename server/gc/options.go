package gc

import (
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Options is deletion GC as users tune it, the same for the embeddable
// store (caspaxos.Options.GC) and a networked node (daemon.Config.GC):
// whether it runs, and the runner's tunables (see Config for each; zero
// values mean its defaults).
type Options struct {
	// Disabled turns GC off: tombstones stay, and deletes are not queued
	// (a later start with GC on finds them by its sweep).
	Disabled bool

	BatchKeys     int
	RoundTimeout  time.Duration
	RetryBase     time.Duration
	RetryMax      time.Duration
	SweepInterval time.Duration // -1: never
	Delay         time.Duration
	OrphanDelay   time.Duration
}

// DefaultOptions returns the defaults of Options: GC on, and the
// runner's defaults (DefaultConfig).
func DefaultOptions() Options {
	def := DefaultConfig()
	return Options{
		BatchKeys:     def.BatchKeys,
		RoundTimeout:  def.RoundTimeout,
		RetryBase:     def.RetryBase,
		RetryMax:      def.RetryMax,
		SweepInterval: def.SweepInterval,
		Delay:         def.Delay,
		OrphanDelay:   def.OrphanDelay,
	}
}

// Config is the runner's configuration on node id.
func (o Options) Config(id protocol.NodeID) Config {
	return Config{
		ID:            id,
		BatchKeys:     o.BatchKeys,
		RoundTimeout:  o.RoundTimeout,
		RetryBase:     o.RetryBase,
		RetryMax:      o.RetryMax,
		SweepInterval: o.SweepInterval,
		Delay:         o.Delay,
		OrphanDelay:   o.OrphanDelay,
	}
}
