// Package chaos runs the code that ships under the simulator's faults: a
// cluster of real nodes (node.New: the acceptor service, the proposer
// driver and the routing; gc.Runner: deletion GC), each on Pebble over its own crashable
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
// quorums. Faults follow a Plan drawn from the seed first thing:
//
//   - the network (net.go) drops, duplicates and delays each message with
//     the plan's rates; a delayed message is delivered by a timer after up
//     to MaxDelay, so messages are reordered. Partitions cut sets of links
//     (a node isolated, a node that sends but hears nothing, random links)
//     and heal. Forwarded requests fail over a cut link;
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
//     (Plan.Replay): copies the network held across the crash, which the
//     acceptor must refuse if it promised more before (PROTOCOL.md §12:
//     its promises are written without a sync, and its floor keeps them).
//
// Every node runs deletion GC (gc.Runner, with delays of milliseconds) over
// the same network (gc.go): a call of a round reaches a node as a forward
// does. Each collection is an operation of its keys' histories
// (sim.HistoryOp.GC), so that a collected tombstone may read as absent.
//
// Clients (client.go) issue one operation at a time on a few keys, on
// random running nodes, with a deadline: Get, Put, Create, CompareAndSwap
// (with versions they saw, now and then off by one), Delete with and
// without a version, Increment.
//
// # What is checked
//
// The invariants of invariants.go while the run goes and at the end (one
// value per ballot, a chosen value survives, what an acceptor showed or
// promised survives its crash), and every key's history with Porcupine, through
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
// go test ./internal/chaos runs defaultSeeds seeds (each DefaultLength of
// clients and faults) and TestBrokenVariantsAreCaught: deliberately broken
// production components, switched on through their own test switches
// (Variants), each of which some seed must catch. The soak runs more
// seeds:
//
//	go test ./internal/chaos -run TestChaos -chaos-seeds 200 -chaos-from 1000 -timeout 0
//
// (make chaos-soak; -chaos-length sets each run's length).
package chaos
