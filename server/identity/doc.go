/*
Package identity is the amnesia guard: the identity of a node's data
directory, and the gate that keeps a node whose directory the cluster does
not know from serving under the identity it had.

An acceptor's promises and accepted values are what makes a chosen value
chosen (PROTOCOL.md §3): a node that comes back with an empty data
directory under the ID it had, and answers as an acceptor, lets a quorum
form that does not hold a value the cluster acknowledged. Three nodes
n1..n3: a write acknowledged by n1 and n2 is lost once n1 comes back
empty and answers with n3. A re-created container without its volume, a
replaced disk or a restored old copy of the directory all do this.

So every data directory has an incarnation, a random name made at its
first start (IDENTITY). Nodes added with --join already have an ID of
their name and incarnation (a new disk is a new node). Nodes of the
bootstrap cluster keep the ID of their name, which --cluster gives every
node up front, and the cluster remembers their incarnation instead:

 1. Every node keeps, in PEERS, the incarnation of every member it has
    heard from, by node ID. A node whose membership lists the caller of
    Admin.Info and knows no incarnation of it records the caller's,
    durably, before it answers (Guard.Learn); the answer says which
    incarnation it knows the caller by.
 2. A bootstrap node does not serve (it answers no protocol message,
    runs no client operation and no forward) until it has heard from
    every other member of its membership, each of which answered that it
    lists the node and knows it by this incarnation. It then records
    that (PEERS, sealed) and serves from then on, also after restarts,
    without asking again.
 3. A node that finds a member knowing it by another incarnation, or not
    listing it, or (a new directory) using a newer membership than the
    bootstrap one, stops with an error that says what to do: remove it,
    start it with --join on an empty directory, add it.

Why this is enough: a node answers as an acceptor only once sealed, and
by then every other member has recorded its incarnation (step 1 happens
before the answer that let it seal). A directory that lost its state
makes a new incarnation; to serve it would need every other member's
word again, and any member that recorded the old incarnation, that is
any member still holding its own state, refuses. Requiring every member
(not a quorum) is what makes this hold for any quorum sizes: with three
nodes, the one other node a write shared may be the only one to know.
The price: a brand-new cluster serves once all its bootstrap members
have started; a restart of a sealed node asks nobody.

A directory of a release before IDENTITY (it has WAS-MEMBER, which every
member wrote at each start) holds its state: it gets an incarnation and
serves at once, sealing in the background as its peers are upgraded, so
that a rolling upgrade never takes a quorum out. Until sealed, its
amnesia would go unseen, as it did before.

A node that is not sealed takes no membership (Admin.SetState) and lists
no keys (Admin.ScanKeys): members added after the bootstrap never learnt
the incarnations of the bootstrap members, so an emptied bootstrap
member handed the current membership by a change would seal against
them (a reviewer's finding), and an emptied store's empty key list would
count in a catch-up. The daemon refuses both while Guard.Err says the
node does not serve.

Not covered: a directory restored from an old copy of itself keeps its
incarnation, and every node of a cluster losing its state at once is a
new cluster.

The Guard reaches the rest of the node through what its constructor is
given: the data directory for its two state files, Peers to ask a member
for its Info, the membership in use, what opening the node to its peers
and clients means (Serve), and how to stop it for good (Fatal).
*/
package identity
