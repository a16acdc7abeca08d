/*
Package watch serves watches (COORDINATION.md, Watch; docs/api.md, Watch):
change notification on keys and prefixes without a global log.

Two sides. On every acceptor, a Publisher is told of each accepted state
once it is durable (acceptor.Hinter) and passes those of watched keys and
prefixes, as hints, to its subscriptions: one per node that watches, over
the peer port's Watch service (server/peerapi) or in process (Local). A
subscription keeps only the latest hint per key, and at most
MaxPendingHints of them; past that it tells the node to resync.

On the watching node, a Hub keeps a hint stream open to every member of
the accept set, opened (and given the whole interest) before the first read
of a new watch. A hint is only a candidate: an acceptor's accept, which a
minority may have made and which may never be chosen. The Hub confirms it
with a linearizable read (the node's get) and delivers what the read
returned; a read that does not show the hinted version yet is repeated
(SettleDelay, doubling, SettleTries times), since the hinting acceptor may
have accepted before the accept quorum was reached (protocol.WatchSettled).
While fewer streams are open than protocol.HintsWhole asks (N − Qa + 1 of
the accept set), after an overflow and after a configuration change, the
Hub resyncs: it re-reads every watched key and re-lists every watched
prefix (server/list) every ResyncInterval until one whole pass began and
ended with the streams whole. An idle watch with whole streams costs no
read and no disk I/O.

A state the node knows is chosen (a write it answered: an accept quorum
answered its proposer; or a linearizable read) is delivered directly
(Hub.Publish).

Watchers hold no queue: a change marks a key pending in each of its
watchers, and Watcher.Next decides each pending key from the Hub's latest
confirmed state with protocol.WatchDecide, so memory is bounded by the
watched keys, and a slow watcher gets the latest state of each key.
Beside each key's mark a watcher keeps the state the mark stands for when
it knows it (the last it delivered, a listing's, the one its first read
found at the version it starts from, or one the caller read: Knew), and
gives it with the next event as Event.Prev (etcd's prev_kv). After a jump
Prev is that last known state, older than the one just before the event;
a watcher that never saw a state of the key gives none.

Bugs.RawAccepts is the broken variant the issue names: it delivers hints
without the confirming read, so that watchers see unchosen states;
internal/chaos shows the check catching it.
*/
package watch
