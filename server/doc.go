/*
Package server is the node runtime of caspaxos: the only package with
goroutines, timers and retries around the pure core of package protocol.

A Node is one member of a cluster. It holds:

  - an Acceptor, the acceptor service: it steps the requests it receives
    through protocol.Step, one batch of many keys at a time, makes the
    registers durable with one Store.Apply per batch (concurrent batches
    share fsyncs), keeps the writes of each key in step order, and releases
    each reply only once every write it may describe is synced (see the
    design comment in acceptor.go);
  - a Proposer, the proposer driver: one goroutine owns a
    protocol.Proposer and performs the duties of its Ready in order
    (persist the ballot ceiling, send, answer, start timers), fires its
    timers (attempt and read timeouts, jittered exponential backoff), and
    cancels the requests whose callers' contexts end;
  - routing: a request runs on the home proposer of its key (Home,
    rendezvous hashing over the members), forwarded there through a
    Forwarder, and on the node's own proposer when the home does not take
    it. Correctness never depends on routing; the one-round-trip cache does.

The seams to the outside are small interfaces: a Transport carries batches of
protocol messages to a node (whose Deliver takes them), a Forwarder hands a
Request to another node's proposer, and storage.Store keeps the acceptor's
registers and the proposer's ceiling. Local implements Transport and
Forwarder for nodes in one process (the embeddable store in package
caspaxos); a network server implements them over its peer links and reuses
Node as it is.

Requests end with the operation's result or one of kv's errors: its own
refusals, kv.ErrNoQuorum (ctx ended before any accept carrying it was sent:
not applied, never will be; it also wraps kv.ErrOverloaded when the
proposer's driver had not even taken it), kv.ErrUnknownOutcome (an accept was sent and
not confirmed: it may take effect), or ErrStopped (the node stopped first:
not applied).
*/
package server
