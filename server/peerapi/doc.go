/*
Package peerapi is the peer port's gRPC services other than the protocol's
own message stream (transport/): the Admin service, through which
membership change, the amnesia guard and hold releases reach a node, and the
GC service, through which deletion GC's steps 2 to 4 reach it. It is the
mirror of clientapi on the peer side: thin handlers that convert the wire,
call what the node implements (Admin, GC) and map errors through one table
(errors.go), and the clients that other nodes use (AdminClients, GCPeers).
*/
package peerapi
