package sim

import (
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// brokenVariant is a deliberately broken driver or core with the fault mix
// that exposes it.
type brokenVariant struct {
	variant Variant
	tweak   func(*Plan)
	// minOps, when set, is the fewest operations per seed the variant
	// runs, under the race detector too: it needs a long run to meet its
	// scenario at all (the seeds stay deterministic, so the seed that
	// catches it without the race detector catches it with it).
	minOps int
}

func brokenVariants() []brokenVariant {
	return []brokenVariant{
		{
			// Replies outrun their sync: needs crashes to lose what was
			// answered, and syncs slow enough that a crash lands in the gap.
			variant: Variant{Name: "reply-before-sync", ReplyBeforeSync: true},
			tweak: func(p *Plan) {
				p.CrashEvery = min(max(p.CrashEvery, 50*time.Millisecond), 150*time.Millisecond)
				p.DownFor = max(p.DownFor, 20*time.Millisecond)
				p.DiskLatency = max(p.DiskLatency, time.Millisecond)
			},
		},
		{
			// A read quorum one short answers from acceptors that missed
			// writes: needs acceptors to fall behind (loss, partitions).
			variant: Variant{Name: "read-quorum-short", Bugs: protocol.Bugs{ReadQuorumShortBy: 1}},
			tweak: func(p *Plan) {
				p.Loss = max(p.Loss, 0.05)
				if p.PartitionEvery == 0 {
					p.PartitionEvery, p.PartitionFor = 150*time.Millisecond, 100*time.Millisecond
				}
			},
		},
		{
			// A cached ballot kept after a timed-out accept is reused with
			// another state: needs the cache (home routing) and timeouts (loss).
			variant: Variant{Name: "keep-cache-on-timeout", Bugs: protocol.Bugs{KeepCacheOnTimeout: true}},
			tweak: func(p *Plan) {
				p.Loss = max(p.Loss, 0.05)
				p.HomeBias = max(p.HomeBias, 0.6)
			},
		},
		{
			// GC without the age fence: an accept or prepare sent before a
			// key's GC, delayed past the removal of its register, lands on
			// an empty register, and a prepare then finds the old value.
			// Needs GCs that finish (every node up), keys idle long enough
			// for a tombstone to be removed (few clients), and messages
			// that arrive very late (reordering).
			variant: Variant{Name: "gc-without-age-fence", NoAgeFence: true},
			tweak: func(p *Plan) {
				p.Nodes = 3
				p.MemberEvery = 0
				p.CrashEvery, p.PartitionEvery = 0, 0 // GC needs every node
				p.Loss = min(p.Loss, 0.05)
				p.GCEvery = 2 * time.Millisecond
				p.Clients = 3
				p.Think = max(p.Think, time.Millisecond)
				p.Reorder = max(p.Reorder, 0.4)
				p.ReorderDelay = max(p.ReorderDelay, 100*time.Millisecond)
			},
		},
		{
			// Membership change without the catch-up: a key written before
			// an odd -> even grow stays on F+1 acceptors, and after the next
			// even -> odd grow a prepare quorum of F+2 can miss all of them.
			// Needs changes often, and keys left alone for a while.
			variant: Variant{Name: "grow-without-catch-up", NoCatchUp: true},
			tweak: func(p *Plan) {
				p.MemberEvery = 20 * time.Millisecond
				p.GCEvery = 0
			},
		},
		{
			// A node that lost its disk comes back empty under its old
			// identity: a value chosen by it and one other acceptor is
			// then on a minority. Needs crashes that lose the disk.
			variant: Variant{Name: "amnesia-restart", AmnesiaRestart: true},
			tweak: func(p *Plan) {
				p.CrashEvery = min(max(p.CrashEvery, 50*time.Millisecond), 150*time.Millisecond)
				p.DownFor = max(p.DownFor, 10*time.Millisecond)
				p.DiskLoss = 0.5
			},
		},
		{
			// Acceptors restart without their floor (§12) while promises
			// still reply before their sync: a crash takes back a promise
			// that was answered, and the acceptor then accepts below it.
			// Needs crashes landing between a promise's reply and its
			// sync (slow syncs).
			variant: Variant{Name: "restart-without-floor", NoFloor: true},
			tweak: func(p *Plan) {
				p.CrashEvery = min(max(p.CrashEvery, 50*time.Millisecond), 150*time.Millisecond)
				p.DownFor = max(p.DownFor, 10*time.Millisecond)
				p.DiskLatency = max(p.DiskLatency, time.Millisecond)
			},
		},
		{
			// A node joins without the members' ballot counter: its
			// proposer starts from counter 0, below the ballots and
			// versions of the registers deletion GC removed before it
			// joined, and a key it re-creates goes back to a low version.
			// Needs nodes joining for the first time (3 of a pool of 5)
			// after GCs that removed tombstones (every node up, keys idle
			// long enough, few clients), and the joiner writing a removed
			// key before anyone else does (home routing, deletes).
			variant: Variant{Name: "join-without-counter", JoinWithoutCounter: true},
			tweak: func(p *Plan) {
				p.Nodes = 3
				p.MemberEvery = 30 * time.Millisecond
				p.CrashEvery, p.PartitionEvery = 0, 0 // GC needs every node
				p.Loss = min(p.Loss, 0.05)
				p.GCEvery = 2 * time.Millisecond
				p.Clients = 3
				p.Think = max(p.Think, time.Millisecond)
				p.HomeBias = max(p.HomeBias, 0.7)
				p.ListEvery = 0 // its scenario is rare: keep the runs it was tuned on
				// Its scenario is rare, and watchers' reads (identity
				// writes) reach a removed key before the joiner does:
				// keep the runs it was tuned on.
				p.Watchers = 0
			},
			minOps: 4000,
		},
		{
			// A write's request ID checked outside its change function
			// (against the issuing node's own acceptor, at issue time): a
			// retry after an unknown outcome whose first attempt was
			// applied, sent to a node whose acceptor has not seen that
			// yet, applies the write again. Needs writes with IDs, unknown
			// outcomes (loss, crashes) and retries to other nodes.
			variant: Variant{Name: "id-check-outside-change", IDCheckOutside: true},
			tweak: func(p *Plan) {
				p.Idempotent = 0.8
				p.IDWindow = time.Second
				p.MaxSkew = 20 * time.Millisecond
				p.Loss = max(p.Loss, 0.1)
				p.HomeBias = min(p.HomeBias, 0.3)
			},
		},
		{
			// Lease expiry read from the reader's clock at read time
			// (renewed + ttl < now, no skew margin) instead of the
			// committed state: a reader whose clock is ahead sees a lease
			// expired before its TTL has passed since its last renewal.
			// Needs leases left to expire, readers, and skewed clocks.
			variant: Variant{Name: "lease-expiry-from-local-clock", LeaseLocalExpiry: true},
			tweak: func(p *Plan) {
				p.Leases = 3
				p.LeaseTTL = 40 * time.Millisecond
				p.MaxSkew = 20 * time.Millisecond
				p.ClockSeed |= 1
			},
		},
		{
			// A lock's token taken from a count of acquires at the
			// answering node instead of the register's version: a later
			// holder, answered by another node, gets a token that is not
			// above the earlier holder's. Needs locks and successive holds.
			variant: Variant{Name: "lock-token-not-version", LockTokenNotVersion: true},
			tweak: func(p *Plan) {
				p.Leases = 3
				p.LeaseTTL = 40 * time.Millisecond
				p.Locks = true
				p.ClockSeed |= 1
			},
		},
		{
			// The breaker breaks a lock's hold without reading its
			// holder's lease: a live holder loses the lock while it may
			// still act, and the next acquirer holds it at the same time.
			variant: Variant{Name: "lock-break-live-lease", LockBreakLiveLease: true},
			tweak: func(p *Plan) {
				p.Leases = 3
				p.LeaseTTL = 40 * time.Millisecond
				p.Locks = true
				p.ClockSeed |= 1
			},
		},
		{
			// A release names no hold: retried by its proposer after a
			// conflict, or delayed, it frees a later hold of the same
			// lease, and another holder then overlaps it. Needs locks,
			// releases followed by new acquires, and retries (loss,
			// duplication).
			variant: Variant{Name: "lock-release-any-hold", LockReleaseAnyHold: true},
			tweak: func(p *Plan) {
				p.Leases = 3
				p.LeaseTTL = 80 * time.Millisecond
				p.Locks = true
				p.ClockSeed |= 1
				p.Loss = max(p.Loss, 0.15)
				p.Dup = max(p.Dup, 0.2)
			},
		},
		{
			// The reaper deletes a key its (stale) index attaches to a
			// lease that ended without checking that the key is still
			// attached: a key put again without a lease is deleted.
			variant: Variant{Name: "lease-unguarded-delete", LeaseUnguardedDelete: true},
			tweak: func(p *Plan) {
				p.Leases = 3
				p.LeaseTTL = 40 * time.Millisecond
			},
		},
		{
			// A listing that merges too few scan replies (one short of
			// ReadQuorum: with 3 acceptors, one acceptor's word) takes a
			// lagging acceptor's stale register, or its lack of one, as
			// the chosen state: needs acceptors that fall behind (loss,
			// partitions) and listings often.
			variant: Variant{Name: "list-quorum-short", ListQuorumShortBy: 1},
			tweak: func(p *Plan) {
				p.Loss = max(p.Loss, 0.05)
				if p.PartitionEvery == 0 {
					p.PartitionEvery, p.PartitionFor = 150*time.Millisecond, 100*time.Millisecond
				}
				listOften(p)
			},
		},
		{
			// Scan replies that show writes not yet synced (what a Pebble
			// store shows without the acceptor's scan barrier): a crash
			// takes back an accept that a quorum of scans showed, and the
			// listing returned a state that is then never chosen. Needs
			// crashes between an accept's write and its sync (slow syncs,
			// crashes often), a restart before the proposer's retry (short
			// downtimes; else the retry's prepare quorum finds the state
			// on the others and chooses it after all), accepts that miss
			// acceptors (loss), and listings often.
			variant: Variant{Name: "scan-before-sync", ScanBeforeSync: true},
			tweak: func(p *Plan) {
				p.CrashEvery, p.DownFor = 10*time.Millisecond, 500*time.Microsecond
				p.DiskLatency = 6 * time.Millisecond
				p.Loss = max(p.Loss, 0.1)
				p.HomeBias = 0.2
				listOften(p)
			},
		},
		{
			// Watchers delivered every hint, one acceptor's accept,
			// without the confirming read (watch.go): they see states
			// before their write is chosen, and states a minority
			// accepted that never are. Needs watchers, and accepts that
			// miss acceptors (loss).
			variant: Variant{Name: "watch-raw-accepts", WatchRawAccepts: true},
			tweak: func(p *Plan) {
				p.Watchers = max(p.Watchers, 2)
				p.WatchResync = max(p.WatchResync, 20*time.Millisecond)
				p.Loss = max(p.Loss, 0.05)
			},
		},
	}
}

// listOften makes listing frequent: two listers, a listing every few
// milliseconds, rounds of one key.
func listOften(p *Plan) {
	p.Listers, p.ListEvery, p.ListBatch = 2, 3*time.Millisecond, 1
}

func variantByName(name string) (brokenVariant, bool) {
	for _, v := range brokenVariants() {
		if v.variant.Name == name {
			return v, true
		}
	}
	return brokenVariant{}, false
}
