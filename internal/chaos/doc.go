// Package chaos runs the code that ships under the simulator's faults: a
// cluster of real nodes (node.New: the acceptor service, the proposer
// driver and the routing; gc.Runner: deletion GC; membership.Keeper and
// Controller: membership change), each on Pebble over its own crashable
// in-memory disk, connected by a faulty in-process network, with clients
// running every kv operation, and checks what they saw.
//
// internal/sim checks the pure core under faults with a simulated driver;
// this package checks the drivers themselves (the acceptor service's group
// commit and reply release, the proposer driver's timers and retries, the
// node's routing, storage's durability), which the simulator replaces.
// Only tests import it.
//
// # The world
//
// 3 or 5 nodes, IDs 1..n, each an acceptor and a proposer with majority
// quorums, each with a membership.Keeper (its state kept across crashes,
// as the daemon's state file). Faults follow a Plan drawn from the seed
// first thing, of one of three kinds (plan.go; seeds 4k are GCChurn, 4k+2
// Membership, the others Mixed, so that seeds 1-4 run each):
//
//   - Mixed: every fault below, clients keeping a few keys busy;
//   - GCChurn gives deletion GC its chance, as the simulator's plan for
//     gc-without-age-fence does: 3 nodes, 2-3 clients pausing a few
//     milliseconds between operations, on 4-7 keys that cycle through
//     delete, collection and re-creation (more deletes and creates), a
//     tenth to a third of the accepts held back up to 150-400 ms more
//     (past GC rounds of tens), no partitions, at most one short crash;
//   - Membership: a Mixed plan on 3 nodes whose cluster grows by one or
//     two nodes and shrinks back (3 -> 4 -> 3, 3 -> 5 -> 3), any node but
//     1 removed; 16 cold keys, picked by a quarter of the operations, so
//     that keys are left alone across a change; loss at least 8%, so that
//     some keys sit on a bare majority.
//
// The faults:
//
//   - the network (net.go) drops, duplicates and delays each message with
//     the plan's rates; a delayed message is delivered by a timer after up
//     to MaxDelay, so messages are reordered, and some are late (held up
//     to LateDelay more). Partitions cut sets of links (a node isolated, a
//     node that sends but hears nothing, random links) and heal. Forwarded
//     requests fail over a cut link. Each node's links follow its
//     membership (membership.Links): it sends requests only to the nodes
//     its membership lists, and takes messages only from them (unless it
//     knows nobody yet: a joining node), checked at delivery, so that a
//     delayed message of a removed node is dropped as its closed
//     connection would drop it;
//   - disks (cluster.go) are vfs.NewCrashableMem behind errorfs: every sync
//     takes the plan's SyncLatency, and a FailSync event makes the next sync
//     fail, which stops the store (PROTOCOL.md §10); the harness then
//     restarts the node, as an operator would;
//   - a crash cuts the node off the network first (nothing it does after
//     reaches anyone), takes vfs.MemFS.CrashClone of its disk (unsynced
//     data lost, or a share of it kept, as the plan says), stops the node
//     and throws the old disk away. The restart opens Pebble on the clone.
//     At most one node is down at a time. After a restart, each of the
//     last requests sent to the node before its crash may reach it again
//     (Plan.Replay, Mixed and Membership plans): copies the network held
//     across the crash, which the acceptor must refuse if it promised
//     more before (PROTOCOL.md §12, on as in the product: its promises
//     are written without a sync, and its floor keeps them).
//
// Every node runs deletion GC (gc.Runner, with delays of milliseconds)
// through its Keeper's GuardGC over the same network (gc.go): a call of a
// round reaches a node as a forward does. Each collection is an operation
// of its keys' histories (sim.HistoryOp.GC), so that a collected tombstone
// may read as absent.
//
// Membership change (membership.go): node 1 runs a membership.Controller
// (never crashed in Membership plans; its change store is memory), which
// reaches every node's Keeper, acceptor and store through ctlPeers:
// in-process calls that a cut link or a node down fails, and that are lost
// before they run or after (their reply) at the plan's loss rate. The
// fault schedule starts a joining node (membership.JoiningConfig) and asks
// for each change once the one before ended; a removed node is stopped
// once its removal ended. Clients run throughout; a change still running
// when they stop is finished (every fault healed, every node up) before
// the checks, and must end within changeLimit.
//
// Clients (client.go) issue one operation at a time on a few keys, on
// random running members, with a deadline: Get, Put, Create,
// CompareAndSwap (with versions they saw, now and then off by one), Delete
// with and without a version, Increment.
//
// # Listing
//
// Every node has a list.Lister (list.go) built as the daemon builds it:
// over its Keeper's accept set, its own store scanned directly and the
// others' as Admin.ScanRegisters reaches them, over the faulty network (a
// cut link or a node down fails the scan at once; a scan lost there or
// back at the plan's loss rate waits for the page's deadline; each leg is
// delayed up to MaxDelay at the plan's rate), undecided keys read through
// its node; BatchKeys is 2, so that rounds stop at a reply's limit. In 5%
// of their turns (their own generator, so that their operations stay what
// the seed draws), clients list every key, one family of keys or k1's,
// with a limit of 1-3 and keys only one time in five, following After
// for up to 4 pages, each page with a deadline of 500 ms. The guarantee
// (kv.ListRequest) is checked page by page:
//
//   - each item of a page (but keys-only ones) is a Get of its key in the
//     histories over the whole page call, [call, return]: Porcupine finds
//     an instant of the call at which the key had that value and version,
//     or fails the run. The model refuses such a read of a key deleted,
//     collected or absent throughout (TestListedReadOfDeletedKeyIsRefused),
//     so this also checks that no deleted key is returned. Items a page
//     emitted before an error are kept: they were true before its return;
//   - completeness (checkLists), on every page that ended well: each key
//     within what the page covered (its prefix, after After, up to its last
//     key if more) and live throughout its call is in it. Live throughout:
//     a write of it that succeeded returned before the call, and no delete
//     may have taken effect after that write and before the return (none
//     that succeeded and returned after the write was called, none of
//     unknown outcome called before the return);
//   - a page that fails with kv.ErrNoQuorum, kv.ErrUnknownOutcome (a read),
//     server.ErrStopped, server.ErrUnreachable or its deadline is checked
//     no further; any other error fails the run.
//
// Pages are independent: two pages of one listing, or two keys of one
// page, need not show one instant (the result is not a snapshot).
//
// # Watching
//
// Every incarnation runs the product's watch (watch.go) as the daemon
// builds it: a watch.Publisher on its acceptor (acceptor.Hinter) and a
// watch.Hub over its Keeper's accept set, its node's reads and its
// Lister, with short timers (resync every 50 ms), and two watchers: one
// of k1, one of every hot key (prefix "k": cold keys are left alone, or
// the watchers' reads would repair them and hide grow-without-catch-up).
// Its hint streams open only over a link that is up to a node that is
// up, and break when either goes (a stream to the node's own acceptor
// too); hints themselves are not delayed or lost (a lost hint is a broken
// stream, which resyncs). The guarantees are checked for every watcher:
//
//   - never a value that was not chosen: each delivery is a read of its
//     key in the histories over [the hub's start, the delivery]
//     (Porcupine must find an instant at which the key had that state; a
//     collected tombstone's "deleted, no version" reads as absent);
//   - versions rise: a delivery at or below the watcher's last version of
//     the key, or whose previous version is not the one it was delivered,
//     fails the run;
//   - the previous state (Event.Prev, etcd's prev_kv) is the state the
//     watcher was delivered last, and none before its first delivery;
//   - the last state arrives: once the clients stopped, every fault healed
//     and every node is up, each watcher of a running incarnation must be
//     delivered, within watchFinalLimit, the last state of every key it
//     watches (read linearizably then): a live key's value and version,
//     a deleted one as deleted or never.
//
// # What is checked
//
// The invariants of invariants.go while the run goes and at the end (one
// value per ballot; a chosen value survives, on the last configuration's
// acceptors, across membership changes; what an acceptor showed survives
// its crash, a floor's refusal aside, and so does every promise it gave,
// though its write may be lost), and every key's history with Porcupine, through
// internal/sim's model (sim.CheckHistory: one definition of a correct
// history for both). Outcomes: a result or a kv refusal is known;
// kv.ErrUnknownOutcome may or may not have taken effect, at any time after
// its call (its return is at infinity); kv.ErrNoQuorum, server.ErrStopped
// and server.ErrUnreachable were not applied and are left out; any other
// error fails the run.
//
// # Replay
//
// Every run logs its seed; a failure prints the plan and the command that
// replays it:
//
//	go test ./internal/chaos -run TestReplay -chaos-seed 1234 -v
//
// A run is not exactly replayable: the nodes are goroutines on real
// timers, and the order in which they draw from the network's generator
// follows the scheduler. What the seed fixes is the plan (the network's
// rates, the schedule of crashes, sync failures and partitions, the disk
// latency), each client's choices of operation, key, value and node, and
// each crash's choice of unsynced data; so a failing seed replays the same
// faults, and usually fails again.
//
// # Running it
//
// go test ./internal/chaos (about 38 s on 2 cores, shared) runs defaultSeeds seeds (each DefaultLength of
// clients and faults; seeds 1-4, one GCChurn and one Membership among
// them) and TestBrokenVariantsAreCaught: deliberately broken production
// components, switched on through their own test switches, each run under
// the plan kind that exposes it (Variants), each of which one of the first
// variantSeeds seeds must catch:
//
//   - reply-before-sync (acceptor.Config.Bugs.ReplyBeforeSync), any plan:
//     caught by invariant 3 or the history at the first seed or two;
//   - restart-without-floor (acceptor.Config.Bugs.RestartWithoutFloor),
//     Mixed: a crash loses an unsynced promise, and the restarted
//     acceptor, with no floor, acknowledges a replayed or retried request
//     below it; caught by invariant 3 in 5 seeds of 10 (seeds 1-10), the
//     first at seed 3;
//   - gc-without-age-fence (acceptor.Config.Bugs.NoAgeFence), GCChurn: an
//     accept held back past its key's GC round lands on the removed
//     register and brings back the value the delete replaced; caught by
//     the history in about 7 seeds of 10;
//   - grow-without-catch-up (membership.ControllerConfig.Bugs.NoCatchUp),
//     Membership: a key left on two of the first three nodes is lost when
//     one of them is removed, or missed by a prepare quorum of five;
//     caught by invariant 2 or the history in about 6 seeds of 10;
//   - list-trust-one-reply (list.Config.Bugs.TrustOneReply), Membership:
//     each round merges the first scan alone with a quorum of one, so a
//     lagging acceptor (a cold key on a bare majority, a lost accept)
//     shows a stale value, or misses a live key; caught in 10 seeds of 10
//     (seeds 1-10): by the completeness check in seeds 2-10, by the
//     history in seed 1 (and seed 5 too).
//   - watch-raw-accepts (watch.Config.Bugs.RawAccepts), Mixed: each hub
//     delivers hints straight from one acceptor's accept, without the
//     confirming read, so that a watcher sees an accept a minority made
//     (a lost or refused accept, a crash mid-write); caught by the history
//     (a delivery no instant of the key's history had), now and then also
//     by the last-state check (a minority's value at the chosen state's
//     version hides it), in 5 to 6 seeds of 10 (two sweeps of seeds 1-10:
//     1, 2, 3, 8, 9; then 1, 2, 3, 4, 7, 8).
//
// The soak runs more seeds:
//
//	go test ./internal/chaos -run TestChaos -chaos-seeds 200 -chaos-from 1000 -timeout 0
//
// (make chaos-soak; -chaos-length sets each run's length, -chaos-plan
// forces a plan kind in TestReplay). A sweep of 20 seeds,
//
//	go test ./internal/chaos -run TestChaos -chaos-seeds 20 -v -timeout 0
//
// (48 s on 2 cores, shared; 10 Mixed, 5 GCChurn, 5 Membership) passed,
// with in all: 7193 operations in the histories (3747 ok, 1842 refused,
// 223 of unknown outcome, the rest GC collections and listed items; 118
// not applied), 69648 messages sent, 4301 dropped, 7948 duplicated, 14647
// delayed, 2227 cut, 965 replayed after a restart; 85 crashes (26 by a failed sync) and 85
// restarts, 61 partitions; 14 membership changes (1 of them ended after
// the clients stopped); 851 requests refused below an acceptor's floor
// and 7717 promise-only writes left unsynced (PROTOCOL.md §12); 862 GC
// collect calls removing 504 registers, and 935 requests refused by an
// age fence; 604 list pages (563 ended well), 719 listed items checked
// as reads, and 638 keys live throughout a page checked as returned.
package chaos
