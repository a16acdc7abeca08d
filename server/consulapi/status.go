package consulapi

import (
	"context"
	"net/http"
)

// statusLeader serves GET /v1/status/leader. caspaxos has no leader: any
// node serves any key, so a node that reaches a quorum of acceptors names
// itself (its Consul address), and one that does not answers "" as Consul
// does while it has no leader.
func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	if s.b.Health(ctx) != nil {
		writeJSON(w, http.StatusOK, "")
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Addr)
}

// statusPeers serves GET /v1/status/peers: the members' peer addresses
// (Consul's are its servers' Raft addresses).
func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	m, err := s.b.Members(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	peers := make([]string, 0, len(m.Members))
	for _, mem := range m.Members {
		peers = append(peers, mem.PeerAddr)
	}
	writeJSON(w, http.StatusOK, peers)
}

// agentSelf serves GET /v1/agent/self, the little of it that clients
// read: the node's name, datacenter and version.
func (s *Server) agentSelf(w http.ResponseWriter, r *http.Request) {
	type config struct {
		Datacenter, NodeName, NodeID, Version string
		Server                                bool
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": config{Datacenter: Datacenter, NodeName: s.cfg.NodeName, Version: s.cfg.Version, Server: true},
		"Member": map[string]any{"Name": s.cfg.NodeName, "Addr": s.cfg.Addr},
	})
}

// Datacenter is the one datacenter caspaxos's Consul API shows (?dc is
// ignored: a cluster is one datacenter).
const Datacenter = "dc1"
