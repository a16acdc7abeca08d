/*
Package protocol is the CASPaxos core of caspaxos: a pure state machine with
no goroutines, no I/O, no clock and no randomness of its own. Messages go in;
messages, results, timers to start and state to persist come out. Everything
that touches the world (storage, network, timers, retries) wraps it, which is
what lets internal/sim run it deterministically under faults.

../shared/PROTOCOL.md is the protocol in our words; comments cite its sections.

# Acceptor

Step(register, request) is the acceptor: a pure function from the register an
acceptor holds for a key and a request (MsgPrepare, MsgAccept, MsgRead) to the
register to store and the reply. Its caller must:

 1. Serialize Steps on one key, each seeing the register the previous one
    returned, synced or not.
 2. Persist the returned register (fsync) before the reply leaves when Step
    says so; many Steps may share one sync.
 3. Hold back any reply until every earlier write to its key is synced.

With the acceptor's ceiling and floor (PROTOCOL.md §12, floor.go), a
promise's write need not be synced before its reply (SyncBeforeReply): the
caller then refuses requests below its floor (BelowFloor, the ceiling it
found on disk when it started) before Step, and holds each reply until its
durable ceiling is at least CeilingFor(request), raising it with
RaiseCeiling when it is not. Both or neither: unsynced promises without the
floor break promises in a crash.

# Proposer

A Proposer turns requests (Propose with a Change, Read) into messages to the
acceptors of its Config, and replies (Step) and timer firings (Fire) into
results. After any call, the caller takes Ready() and must, in order:

 1. Persist Ready.Ceiling durably if it is not zero, before anything else
    leaves: it is the ballot high-water mark that keeps ballots unique across
    restarts (PROTOCOL.md §2). Pass the last persisted ceiling back in
    ProposerConfig.Ceiling on restart. Persist Ready.Age likewise if it is
    not zero (an age learnt from an acceptor's fence), and pass it back in
    ProposerConfig.Age. Counters, versions and ages never pass MaxCounter,
    MaxVersion and MaxAge: past them requests answer ErrExhausted.
 2. Send Ready.Messages to the nodes named in their To fields.
 3. Deliver Ready.Results to the callers named by their IDs.
 4. Start Ready.Timers and call Fire(t) when each is due: TimerAttempt after
    the attempt timeout, TimerRead after the read timeout, TimerWiden after
    about a round trip to the nearest quorum (a read that asked it first
    then asks the other acceptors too), TimerGather after about one
    turnaround of a caller (only with ProposerConfig.Gather), TimerBackoff
    after a jittered exponential delay that grows with Timer.Retry.
 5. Call Cancel(id) when a caller stops waiting. The Result then says whether
    the change may still take effect (ErrUnknownOutcome) or never will
    (ErrAborted).

All calls on one Proposer must be serialized.

# What the proposer does

  - Two phases (§3) when it has no cached promise for the key; one round trip
    (§5) when the previous accept on the key carried the next ballot's
    promise. The cache entry survives only a full accept quorum.
  - Changes that arrive while the key is busy wait and are then composed:
    applied in order to one state and committed by one accept, each caller
    getting its own result.
  - A refusal (a Change returning an error) is answered only after the state
    it was computed from is known to be chosen (§4).
  - Reads try the fast path (§6) and fall back to the identity change.
  - After a failed accept the batch is retried; the retry commits the earlier
    state again if the acceptors show it, applies the batch afresh if they
    prove it can never be chosen, and answers ErrUnknownOutcome otherwise.
  - Conflicts fast-forward the ballot counter past what the acceptor saw.

# Rules for the callers' background work

Two more pure rules belong to work that runs beside the acceptor and the
proposer, so that the runtime and internal/sim share them:

  - PlanAdd and PlanRemove plan a membership change (PROTOCOL.md §8): the
    configurations, each a PlanStep, that take a Steady configuration to one
    with an acceptor more or less, and which steps copy the GC age fences to
    a joining acceptor or catch up every key. Every step is checked against
    the one before it. Carrying the plan out is the caller's.
  - Collectible is deletion GC's step 4 (PROTOCOL.md §9): whether an
    acceptor's register for a Tombstone is removed now, later (a later
    round's), or never needs to be. Register.Equal compares registers.
*/
package protocol
