/*
Package server is the node runtime of caspaxos: the packages with goroutines,
timers and retries around the pure core of package protocol. This package is
their shared leaf: the seams between them (Transport, Receiver, Forwarder,
Distancer, Request), the errors they share, the routing rule
(Home) and the retry delay (Backoff). It holds no goroutine of its own.

One package per concern lives below it; each reaches the others only through
this leaf and the small interfaces it declares itself (internal/arch checks
the graph):

	acceptor/    the acceptor service: protocol.Step over one batch of many keys,
	             group commit, per-key write order, replies released after the
	             sync they depend on, GC fences and collection
	proposer/    the proposer driver: one goroutine owns a protocol.Proposer and
	             performs its Ready; timers, backoff, round-trip-adaptive timeouts
	node/        one member: an acceptor and a proposer, routing to a key's home,
	             the free-space guard, and Local, the in-process network
	gc/          deletion GC: the persisted queue, the sweep and the four-step
	             rounds over every proposer and acceptor (PROTOCOL.md §9)
	membership/  membership change: plans, the controller, the catch-up, the
	             Keeper of one node's membership state (PROTOCOL.md §8), and
	             its Standing: removal and hold probes, hold releases
	identity/    the amnesia guard: a data directory's incarnation, the
	             members' word on it, and the gate a node serves through
	list/        listings: a prefix's live keys page by page, merged from a
	             read quorum of acceptors (COORDINATION.md, Listing)
	watch/       watches: the acceptors' hint publishers and each node's
	             watchers, confirmed by reads (COORDINATION.md, Watch)
	lease/       lease expiry: each node's reaper proposes the committed
	             expiry of the leases its store holds (docs/leases.md)
	lock/        a lock's acquire: waits on a watch of the lock and its
	             holder's lease, breaks a dead lease's hold (docs/locks.md)
	auth/        authorization: users, roles, permissions, tokens, and the
	             Guard that checks every client request (docs/security.md)
	clientapi/   the client port: gRPC and HTTP over one listener, admission
	etcdapi/     etcd's v3 gRPC API on its own port (docs/etcd.md), over the
	             client port's Backend, admission and auth; etcdpb/ below it
	             holds its wire-compatible generated code
	consulapi/   Consul's KV HTTP API, blocking queries and sessions on its own
	             port (docs/consul.md), over the same seams
	peerapi/     the peer port's Admin and GC services and their clients
	metrics/     the Prometheus registry: every part's counters at scrape time
	status/      one node's status (GET /v1/status, `caspaxos status`, the
	             status page): sizes, GC, peers, WAL fsync p99, requests/s
	ui/          the status page (/ui/): HTML and a small script, embedded
	daemon/      assembly: one node of a network cluster from a nested Config
	servertest/, node/nodetest/, clientapi/clientapitest/
	             what the packages' tests share; only tests import them

The data flows one way: a request enters through clientapi (or a forward
from a peer), a node routes it to the key's home proposer, the proposer's
messages reach the acceptors through a Transport, the acceptors make their
registers durable through storage and reply.

Requests end with the operation's result or one of kv's errors: its own
refusals, kv.ErrNoQuorum (ctx ended before any accept carrying it was sent:
not applied, never will be; it also wraps kv.ErrOverloaded when the
proposer's driver had not even taken it), kv.ErrUnknownOutcome (an accept
was sent and not confirmed: it may take effect), or ErrStopped (the node
stopped first: not applied).
*/
package server
