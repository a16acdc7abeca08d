/*
Package auth is the authorization of caspaxos: users, roles, permissions and
tokens, and the Guard that checks every client request against them.

# Pure parts and runtime

perm.go, state.go and token.go are pure: permission matching, the records
and their JSON encoding, the token format. They read no clock (the caller
passes now) and do no I/O, so that they are tested with tables.
guard.go is the runtime: it reads and writes the auth state as an ordinary
register through the node (Registers), and caches it.

# Where the state lives

Every key that begins with the byte 0x00 is reserved for the cluster itself:
the client API refuses it for every operation (kv.ErrReservedKey), so no
client can read or write it through the KV API. The whole auth state (the
enabled flag, the token-signing key, every user and every role) is one
register, StateKey ("\x00auth/state"), a JSON State. One register because
caspaxos has no transaction across keys: deleting a role and taking it away
from every user, or enabling auth only while a root user exists, must be one
compare-and-swap. Each change reads the register, applies the change to the
decoded State, and writes it back with kv.CompareAndSwap on the version it
read, retrying on a mismatch, so that concurrent changes on different nodes
never lose one another. The cost: the state is bounded by the value limit
(1 MiB by default: some thousands of users and roles), which suits the
operators' accounts it is meant for.

# Staleness

Each node caches the state it last read. A request checks against a cache
younger than Config.Staleness (default 5s); an older one is read again, with
a linearizable read, before the request is checked. A change made through a
node replaces that node's cache at once. So a revoked permission, a deleted
user or a disabled auth takes effect at once on the node that changed it and
within Staleness on every other node: a cached state's age counts from the
start of the read that brought it, and the cache, tagged with the
register's version, is never replaced by an older one (a refresh that read
before a change made here and ended after it keeps the change). When the
read fails (no quorum), the
node keeps checking against the last state it read since it started: most
requests it would then let through need a quorum themselves and fail the
same way; the exception is releasing held nodes, which is meant for a
degraded cluster.

A node that has not read the state since it started (it restarted amid a
partition) fails closed: it never takes a missing state, nor its own
acceptor's copy, as "auth disabled". After each quorum read it keeps on
its own disk whether auth was enabled (Registers.SetSeen, a Seen); without
a quorum it treats auth as disabled only if that record says so and its
own acceptor holds no enabled state, and otherwise refuses everything that
needs authorization with ErrStateUnknown (code no_quorum). So releasing
held nodes in a degraded cluster stays possible without credentials only
where auth was disabled at the node's last read. (The daemon seeds the
record "disabled" at the first start of a member of a new cluster, where no
auth state exists yet.)

A Batch stream authenticates once, when it opens; each of its ops is then
checked against the permissions the user holds at that moment (within
Staleness), so a revoked grant or a deleted user stops a stream's ops, but
the token's expiry does not end a stream that opened before it.

# Authentication

A user logs in with a password (hashed with bcrypt; the hash is stored, never
the password) and gets a token: "v1.<payload>.<mac>", the payload a base64url
JSON {user, generation, expiry}, the mac HMAC-SHA256 of it under the
signing key. Any node verifies a token with the key in the state; none
keeps a session. Because every node takes a token, a login checks the
password against a fresh linearizable read of the state, never a cache: a
node cut off from the quorum answers it kv.ErrNoQuorum, whatever it cached.
A node checks at most Config.MaxConcurrentLogins passwords at once
(bcrypt is slow by design) and refuses one more as kv.ErrOverloaded.
A token lives Config.TokenTTL (default 5 minutes); the Go client logs in
again before it expires. A wrong, forged or expired token is refused as
unauthenticated, as is a token of a user deleted since.

Each user holds a random generation (User.Generation), made anew when it
is added and when its password changes, and each token carries the one it
was made under: a password change, or a delete and re-add of the name,
ends the user's tokens (at once on the node that changed it, within
Staleness elsewhere). A role change does not: permissions are checked per
request anyway. A user changing its own password must give the current
one, so that a stolen token cannot take the account over; an admin
changing another's need not. Changing the signing key (disable and enable
again) ends every token.

A client certificate verified by the transport (TLS) authenticates the user
named by its subject's common name, if such a user exists; a token, if
present, wins.

# Permissions

A role grants read, write or readwrite on one key or on every key with a
prefix, or admin. Admin allows membership changes, releasing held nodes,
user and role management and disabling auth. The user "root" always holds
admin; auth can be enabled only while it exists, and it cannot be deleted
while auth is enabled, so the cluster cannot lock out its operators.
Once enabled, everything not granted is denied. Health, metrics, the
members list, the auth status and login stay open: a load balancer, a
Prometheus scraper and the client's routing use them without credentials,
and none of them reveals a key or a value (etcd leaves them open too).
*/
package auth
