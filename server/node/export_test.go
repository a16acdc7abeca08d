package node

// The unexported rules the external tests (package node_test) check.
var (
	Near            = near
	SplitRequests   = splitRequests
	SpaceErr        = spaceErr
	RefusesWhenFull = refusesWhenFull
)

// SetSpace replaces n's free-space configuration while it runs.
func SetSpace(n *Node, cfg SpaceConfig) {
	n.space.mu.Lock()
	n.space.cfg = cfg
	n.space.mu.Unlock()
}
