/*
Package membership is membership change (PROTOCOL.md §8): a Membership is
the versioned acceptor configuration every node uses with its members'
names and addresses; a change adds or removes one node through a plan of
Steps (membership.go); a Controller applies a plan to every node in turn,
copying GC fences to a joining node and catching every key up where a step
needs it (controller.go, catchup.go); a Keeper holds one node's membership
state, persists it and applies it to the node's proposer, routing and peer
links (keeper.go), and pauses deletion GC while a change holds the node
(gc.go); a Standing watches whether the node is still a member, by its own
membership and by its peers' (removed.go), and frees it of a hold whose
change is over, by its controller's word or an operator's (hold.go).
*/
package membership
