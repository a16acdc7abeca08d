/*
Package acceptor is the acceptor service of a node: it steps the requests it
receives through protocol.Step, one batch of many keys at a time, makes the
registers durable with one storage.Store.Apply per batch (concurrent batches
share fsyncs), keeps the writes of each key in step order, and releases each
reply only once every write it may describe is synced (see the design
comment in acceptor.go). It also carries deletion GC's steps 3 and 4 on this
acceptor: age fences and the collection of tombstones (gc.go).
*/
package acceptor
