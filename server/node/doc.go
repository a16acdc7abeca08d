/*
Package node is one member of a cluster: a Node holds

  - an acceptor.Acceptor, the acceptor service, to which it hands the
    requests it receives;
  - a proposer.Proposer, the proposer driver, to which it hands the replies;
  - routing: a request runs on the home proposer of its key (server.Home,
    rendezvous hashing over the members), forwarded there through a
    server.Forwarder, and on the node's own proposer when the home does not
    take it or is far (kv.ForwardMaxRTT). Correctness never depends on
    routing; the one-round-trip cache does;
  - a free-space guard that refuses writes on a full disk or over a quota
    before anything is proposed (space.go).

Its entry points: Deliver takes messages from a Transport; Run (and Do, for
a plain operation) routes a request; Propose runs one on this node's
proposer, the target of a forward.

Local implements server.Transport and server.Forwarder for nodes in one
process (the embeddable store in package caspaxos, and tests); the network
daemon implements them over its peer links and reuses Node as it is.
*/
package node
