/*
Package etcdapi serves etcd's v3 gRPC API on a node's --etcd-addr, so that
etcdctl, clientv3 and the libraries built on etcd's API work unchanged
against caspaxos (issue 23; COORDINATION.md, Compatibility mappings;
docs/etcd.md has the table of what is supported, how, and what is refused).

caspaxos has no global revision: every key is its own register with its own
version. The mapping:

	mod_revision     the key's version (it rises by one per change, a
	                 delete and a re-create included, and never resets)
	version          changes since the key's current life began (1 on
	                 creation); see below for what is stored
	create_revision  the version that began the key's current life
	header.revision  the key's version, on calls that touch one key; 0 on
	                 ranges over many keys (there is no store revision: a
	                 prefix watch resumes from now, WithRev(0); at a
	                 revision it is answered with a compaction)
	lease            the lease a Put attached the key to (0: none); the key
	                 is deleted when the lease ends (docs/leases.md)

create_revision comes from the register (protocol.State.Created, set by the
write that begins a key's life). A live key last created before that field
was kept has none: it reports create_revision = mod_revision and version =
1, and a Txn comparing its create_revision or version is answered only when
the compare holds, or fails, for every value from 1 to mod_revision (such as
"= 0" or "> 0"), and refused with FailedPrecondition otherwise, never
answered wrongly.

What runs how:

	Range, one key     a linearizable get (serializable is served the same)
	Range, many keys   pages of server/list's listing: each key had its value
	                   at some instant during the call, not one snapshot;
	                   count walks the whole range; a sort other than by key
	                   ascending, or a min/max revision filter, reads the
	                   whole range and sorts or filters it here
	Range at revision  Unimplemented: there is no history to read
	Put                a put; with prev_kv, a get and a compare-and-swap on
	                   the version read, retried on a conflict
	DeleteRange        one key: a delete (with prev_kv, a get then a delete
	                   on the version read); a range: the keys listed, then
	                   deleted one by one, each on the version listed: not
	                   atomic, a key changed meanwhile is left alone
	Txn                compares and ops on one key: a get, the compares
	                   evaluated on it, then the branch's write as one
	                   compare-and-swap on the version read (the version
	                   names one state of the register for ever, so the write
	                   applies to exactly the state compared), retried from
	                   the get on a conflict; more than one key:
	                   InvalidArgument
	Status, MemberList from the node's membership and health
	Alarm              GET only: no alarms are raised here
	Authenticate       the node's auth (server/auth): the token it returns is
	                   a caspaxos token, sent back by clientv3 as "token"
	Lease              caspaxos's leases (kv/lease.go) of the same ID: the
	                   client port's operations and permission checks; TTLs
	                   in seconds; the keep-alive stream answers TTL 0 for a
	                   lease gone, as etcd does; LeaseLeases lists the lease
	                   key space; TimeToLive with keys is refused (the
	                   keys attached to a lease are not listed), lease.go
	Watch              server/watch's watches: one key (from now, or its
	                   current state if its version reached start_revision)
	                   or a prefix (from now; at a revision: a compaction,
	                   so that the client relists); events coalesced per
	                   key; prev_kv the state the watch knew last (after a
	                   jump older than the one just before; none when it
	                   knew none or the key was deleted), watch.go
	Lock, Election     etcd's v3lock and v3election services on the native
	                   locks (kv/lock.go, server/lock, docs/locks.md): a
	                   lock or election NAME is the one register
	                   kv.LockKey(NAME), held by a lease; Lock and Campaign
	                   wait on a watch until held, the fencing token (the
	                   register's version after the acquire) in
	                   header.revision and LeaderKey.rev, the hold's key
	                   NAME/LEASE (hex) as etcd's; Unlock and Resign of a
	                   hold already gone answer OK, as etcd; Leader and
	                   Observe see no leader once the holder's lease is not
	                   live; etcd's "election: not leader" and "election: no
	                   leader" (code Unknown, as etcd sends them), lock.go,
	                   election.go. clientv3's concurrency package (etcdctl
	                   lock and elect) ranks waiters by create_revision
	                   across keys: its Txn is refused, saying to use these
	                   services, txn.go
	everything else    Unimplemented, saying what caspaxos offers instead

Permissions are those of the client port (server/auth): a key read needs
read on the key, a write write on it, a listing shows only the keys the
caller may read, and Txn needs read on its key, and write if a branch
writes. A lock or election NAME is guarded as the key NAME, as on the
client port's lock routes: write to lock, unlock, campaign, proclaim and
resign, read for Leader and Observe. Credentials: a client certificate's common name (TLS with client
certificates, as on the client port), etcd's "token" metadata, or a bearer
"authorization" header.
*/
package etcdapi
