// Package sim is the deterministic simulator that checks the pure CASPaxos
// core (package protocol) for linearizability under faults.
//
// # Determinism
//
// A run is one event loop over an agenda ordered by (virtual time, sequence
// number), with one PRNG (math/rand/v2's PCG, seeded from the run's seed)
// and a virtual clock. It starts no goroutines and reads no wall clock;
// nothing that affects the run depends on map iteration order. The seed
// therefore names the run: the same seed gives a bit-identical run, which
// TestSameSeedSameRun checks by hashing the event trace twice.
//
// # The world
//
// 3 or 5 nodes; each is an acceptor and a proposer, and the simulator is
// their driver. It calls protocol.Step for acceptor requests and the
// Proposer's methods for everything else, and honours the core's duties:
// Steps on a key are serialized and see the last Step's register, synced or
// not; a reply leaves only once the write it depends on is synced; a
// Ready's ceiling is synced before its messages leave, and Readys are
// handled in order (messages, then results, then timers).
//
// Acceptors follow PROTOCOL.md §12 through the core's own rules
// (protocol.BelowFloor, CeilingFor, RaiseCeiling, SyncBeforeReply): a
// promise's reply leaves without waiting for its write's sync, but only
// once the acceptor's ceiling, a write of its own (raised by the plan's
// CeilingStep, so that small steps raise it often), covers the request's
// ballots in synced storage; at every restart the acceptor takes its
// synced ceiling as its floor and refuses every prepare and accept below
// it. An acceptor emptied before it is added back loses its ceiling with
// its registers, and starts with floor 0.
//
// Each node's storage keeps synced and unsynced writes apart: writes (the
// acceptor's registers and ceiling, and the proposer's ceiling) go to a pending layer; a
// sync takes a simulated disk latency and covers every write pending when
// it started (group commit). A crash loses the pending layer, the sync in
// flight, the replies and Readys waiting, and the proposer's memory; the
// node restarts with a fresh protocol.Proposer that knows only the synced
// ceiling.
//
// Many clients work on a few keys, one operation at a time each, every kind
// package kv has: Get (Proposer.Read), Put, Create, CompareAndSwap (with
// versions the client saw, now and then off by one), Delete with and
// without a version, Increment. A client sends each operation to a random
// node or to its key's home node (so that the one-round-trip path and
// composition happen), with a deadline after which the driver calls
// Proposer.Cancel. Timers fire after jittered delays (backoff: jittered and
// exponential in the retry count).
//
// Most plans also run deletion GC (PROTOCOL.md §9) as events among the
// faults: all four steps, each redone on a node that crashed before syncing
// it; a GC run is an operation of its key's history (see gc.go). Half of
// them change membership (PROTOCOL.md §8) among a pool of 5 nodes, between
// 3 and 5 acceptors, one step at a time with the catch-up, never during a
// GC (see member.go); invariant 2 then holds against every configuration a
// proposer may use. The pool's nodes beyond the first acceptors have not
// joined: they start, empty and with their proposer at counter 0, when a
// change first adds them, and take the members' age fences and ballot
// counter before they serve anyone.
//
// Most plans also run listers (COORDINATION.md, Listing; see list.go): a
// node lists a prefix page by page, asking every acceptor of its accept
// set for a scan (list.ScanStore over what its Steps left, the reply held
// until every write before it is synced) over the same faulty network,
// merging the first cfg.ReadQuorum() replies with protocol.MergeList,
// reading the keys they disagree on through its proposer, and asking a
// round again when its node changed configuration meanwhile
// (protocol.ListRoundStale). The listers' plan comes from a generator of
// its own, so that a run with listing off is the run it was before.
//
// Faults follow a Plan drawn from the seed first thing (and printed by
// TestReplay and by every failure): message loss (0-30%), duplication
// (0-50%), delay and reordering; partitions that come and go (symmetric,
// one-way, and a ring in which each node sees a majority but no two the
// same one; with 3 nodes, a line); crashes losing unsynced writes (at most a
// minority down at once), some of them losing the whole disk (the node then
// stays down, as the server refuses a data directory the cluster does not
// know, until a membership change removes it and adds it back empty); slow
// nodes (disk, network or both). Each fault
// kind's mean length is at most its mean gap, so faults come and go.
//
// # What is checked
//
// While the run goes, the invariants documented on type invariants: one
// value per ballot, a chosen value is never lost, a promise is never broken
// (kept by the synced register or below the floor after a restart), no
// ballot above the synced ceiling leaves a node, no promise above the
// synced acceptor ceiling leaves an acceptor. At the end,
// every key's history, with Porcupine (partitioned per key), each item a
// listing returned among them as a read of its key over its page's call
// (the key had that value and version at some instant of the call; the
// model refuses one of a key deleted throughout); and every key live
// throughout a page that ended well must be in it (checkListings).
//
// In a quarter of the runs (drawn from a generator of their own, so that
// the others are the runs they were), watchers on keys and prefixes run on
// the nodes as server/watch runs them: hint streams from the acceptors
// over the simulated network, confirming reads through the proposer,
// resync while the streams are not whole, and protocol's watch rules for
// every decision (see watch.go). Every state a watcher is delivered joins
// its key's history as a get; versions must rise per watcher; and once the
// operations are done and the faults stop, every watcher must be delivered
// the latest chosen state of every key it watches.
//
// The model is a register per key: exists, value, version, with kv's change
// functions as its operations. What it can and cannot predict about
// versions: a register with no history takes max(1, ballot counter) as its
// first version, and ballot counters are not the model's to know, so a
// first write may return any version >= 1; every later write (deletes and
// re-creates included) returns exactly one more than the last. After a
// first write whose result was not seen, the version is a lower bound until
// an output pins it. Each output's version is checked against that.
//
// Outcomes: an aborted operation (protocol.ErrAborted) did nothing and is
// left out of the history, as is a read that got no answer. An operation
// answered with protocol.ErrUnknownOutcome, or never answered because its
// node crashed, may or may not have taken effect: its output is "unknown",
// which the model accepts either way. Porcupine's convention gives such an
// operation a return time at infinity; here the retirement rule (see type
// retirement) closes it as soon as it provably can no longer take effect,
// which keeps the search small and can only make the check stricter. A
// never-answered operation whose change never left its node in an accept
// cannot have taken effect and is left out like an aborted one. A Porcupine
// search that does not finish within Options.CheckTimeout fails the run.
//
// # Running it
//
// The default sweep is 200 seeds of 8,800 client operations each (and the
// listings beside them; 8,800 keeps the sweep's CPU time about what it was
// with 10,000 operations and no listers), run in parallel
// (one per CPU), followed by a check that the sweep as a whole exercised
// every path (one-round-trip accepts, composed batches, read fast-path
// hits and fallbacks, unknown outcomes, crashes, each kind of partition,
// ...); under the race detector the sweep is 16 seeds of 4,000 operations:
//
//	go test ./internal/sim
//	go test -race ./internal/sim
//
// A failure prints the seed, the plan, the last events and the command that
// replays it:
//
//	go test ./internal/sim -run TestReplay -seed 1234 -v
//
// (add -events FILE to write every event to a file, -variant NAME for a
// broken variant, -ops N to change the run's length). The soak runs many
// more seeds, from -soak-from (default 1000000):
//
//	go test ./internal/sim -run TestSoak -soak 20000 -timeout 0
//
// TestBrokenVariantsAreCaught runs deliberately broken variants (an
// acceptor that replies before its write is synced, a read quorum one
// short, a one-round-trip cache kept after a timed-out accept, deletion GC
// without the age fence, membership change without the catch-up, a node
// that lost its disk coming back under its old identity, acceptors that
// restart without their floor, a node joining without the members' ballot
// counter, a listing that merges one scan reply too few, scans that answer
// before the writes they show are durable, watchers delivered one acceptor's hints without the
// confirming read) and fails
// unless the checker or an invariant catches each within a few seeds; -v
// shows which seed caught each.
package sim
