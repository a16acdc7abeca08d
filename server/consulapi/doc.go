/*
Package consulapi serves Consul's KV HTTP API on a node's --consul-addr, so
that Consul's Go api package, consul kv and the tools built on that API work
unchanged against caspaxos (COORDINATION.md, Compatibility mappings;
docs/consul.md has the table of what works, what differs and what is
refused).

caspaxos has no global log and no global index: every key is its own
register with its own version. The mapping:

	ModifyIndex    the key's version (it rises on every change, a delete and
	               a re-create included, and never resets)
	CreateIndex    the version that began the key's current life
	               (protocol.State.Created; a key written before that was
	               kept reports its ModifyIndex)
	LockIndex      protocol.Attrs.LockIndex
	Flags          protocol.Attrs.Flags, set by every PUT (0 without ?flags)
	Session        protocol.Attrs.Lease as a session ID, while the key is
	               held and that lease is live (a session is a lease:
	               session.go; an ended one's key is shown free, its lock
	               delay still refusing acquires)
	X-Consul-Index one key: its version (a deleted key's too: its tombstone
	               keeps one); a prefix (?recurse, ?keys): this node's
	               counter for the prefix (index.go), which rises whenever a
	               key under it changes, differs between nodes and starts
	               again at a restart: clients reset on an index that goes
	               backwards, as Consul's contract says

What runs how:

	GET one key        a linearizable read (?consistent and ?stale are
	                   accepted and served the same: linearizable)
	GET ?recurse/?keys pages of server/list's listing: each key had its
	                   value at some instant during the call, not one
	                   snapshot
	?index=N&wait=D    a blocking query: answers at once unless the index is
	                   N; otherwise waits on the node's watch (server/watch;
	                   no polling) until the index changes or D ends, then
	                   reads again
	PUT                kv.OpPutFlags: value and flags, keeping the key's lock
	PUT ?cas=N         kv.OpCompareAndSwapFlags on version N (0: create only)
	PUT ?acquire=S     kv.OpKeyAcquire: the key's holder becomes S's lease if
	                   free (or S's already); LockIndex+1 for a new holder
	PUT ?release=S     kv.OpKeyRelease: frees a key S holds
	/v1/session/...    create, renew, destroy, info, node, list: a session is
	                   a lease (grant, keep-alive, revoke), its name, node,
	                   lock delay and behaviour in the session table; a key
	                   held by an ended session is released (or deleted) at
	                   its next read once the lock delay has passed
	                   (session.go)
	DELETE             a delete (?cas=N: only at version N); ?recurse: the
	                   prefix listed, then each key deleted on the version
	                   listed: not atomic, a key changed meanwhile is left
	/v1/txn            operations on one key: a read, the operations run on
	                   it, their net write as one check-and-set on the
	                   version read (txn.go); more than one key, and the
	                   session verbs (lock, unlock, check-session): refused
	/v1/status/leader  this node's address while it reaches a quorum ("" if
	                   not): there is no leader, any node serves any key
	/v1/status/peers   the members' peer addresses
	/v1/agent/self     the node's name, datacenter (dc1) and version
	everything else    501, naming what is served

Sessions need an authenticated caller when auth is on; only their creator
(or an admin) renews or destroys one. An acquire or release needs write on
the key.

Permissions are those of the client port (server/auth): a read needs read
on the key, a write write on it, a listing shows only the keys the caller
may read (its index covers the whole prefix). Credentials: Consul's
X-Consul-Token header or ?token= carries a caspaxos token (from `caspaxos
auth login`), as does a bearer Authorization header; or a client
certificate's common name (TLS with client certificates, as on the client
port). An invalid token is 403 "ACL not found", a denied request 403
"Permission denied", the words Consul itself answers.
*/
package consulapi
