/*
Package proposer is the proposer driver of a node: one goroutine owns a
protocol.Proposer and performs the duties of its Ready in order (persist the
ballot ceiling, send, answer, start timers), fires its timers (attempt and
read timeouts, jittered exponential backoff), stretches them to the measured
round trips to a quorum (timeouts.go), and cancels the requests whose
callers' contexts end. It also runs deletion GC's steps 1 and 2 on this
proposer (gc.go) and the membership change's configuration and catch-up
requests (membership.go).
*/
package proposer
