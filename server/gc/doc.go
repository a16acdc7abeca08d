/*
Package gc is deletion GC (PROTOCOL.md §9): a Runner per node keeps a
persisted queue of deleted keys, sweeps the local store for tombstones a
crash kept out of the queue, and runs rounds of four steps over every
proposer and acceptor of the cluster through Peers (see gc.go). Options are
what an embedding program or the command line sets.
*/
package gc
