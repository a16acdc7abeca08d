package daemon

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/membership"
)

// clientAddrBook keeps the other members' client addresses, as their
// answers to Admin.Info name them, for the member listing (GET
// /v1/members, gRPC Cluster.Members): a client given one endpoint finds
// every member's there (`caspaxos status --cluster`). The membership
// itself carries only peer addresses.
//
// A listing asks, at once and each within Timers.MemberInfoTimeout, the
// reachable members whose address it has not learnt, or learnt more than
// Timers.ClientAddrMaxAge ago (a node restarted with another
// --client-addr). A member that does not answer keeps the address learnt
// last, so that a client still tries it and sees it down.
type clientAddrBook struct {
	mu   sync.Mutex
	byID map[protocol.NodeID]learntClientAddr
}

type learntClientAddr struct {
	addr string
	at   time.Time
}

// fillClientAddrs sets the client address of each member of ms other
// than this node to the one learnt for it, asking those it must (see
// clientAddrBook); a member with none learnt is left without.
func (d *Daemon) fillClientAddrs(ctx context.Context, ms []clientapi.Member) {
	b := &d.addrBook
	now := time.Now()
	var ask []clientapi.Member
	b.mu.Lock()
	for _, m := range ms {
		id := protocol.NodeID(m.ID)
		l, ok := b.byID[id]
		if id != d.id && d.reachable(id) && (!ok || now.Sub(l.at) > d.cfg.Timers.ClientAddrMaxAge) {
			ask = append(ask, m)
		}
	}
	b.mu.Unlock()
	if len(ask) > 0 {
		ictx, cancel := context.WithTimeout(ctx, d.cfg.Timers.MemberInfoTimeout)
		var wg sync.WaitGroup
		for _, m := range ask {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := protocol.NodeID(m.ID)
				// Caller 0: a question that records nothing on the peer.
				info, err := d.admin.Info(ictx, membership.Member{Name: m.Name, ID: id, PeerAddr: m.PeerAddr}, 0, "")
				if err != nil || info.ID != id || info.ClientAddr == "" {
					return
				}
				b.mu.Lock()
				if b.byID == nil {
					b.byID = map[protocol.NodeID]learntClientAddr{}
				}
				b.byID[id] = learntClientAddr{addr: info.ClientAddr, at: time.Now()}
				b.mu.Unlock()
			}()
		}
		wg.Wait()
		cancel()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range ms {
		if l, ok := b.byID[protocol.NodeID(m.ID)]; ok && protocol.NodeID(m.ID) != d.id {
			ms[i].ClientAddr = reachableAt(l.addr, m.PeerAddr)
		}
	}
}

// reachableAt is client address addr as a client can dial it: a listener
// on an unspecified host (":7070", "0.0.0.0:7070", "[::]:7070") is
// reached at the host of the member's peer address, which the other
// members dial. addr as it is when it names a host or cannot be parsed.
func reachableAt(addr, peerAddr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	peerHost, _, err := net.SplitHostPort(peerAddr)
	if err != nil || peerHost == "" {
		return addr
	}
	if ip := net.ParseIP(peerHost); ip != nil && ip.IsUnspecified() {
		return addr
	}
	return net.JoinHostPort(peerHost, port)
}

// allowedHosts are the host names a browser may name the client port by
// (clientapi.HTTPConfig.AllowedHosts): HTTPAllowedHosts, and the names
// (not IP addresses, which the guard always allows) the node is
// configured with for that port: ClientAddr's host, and the host of the
// client address it gives its members (its peer address's when ClientAddr
// is unspecified).
func (d *Daemon) allowedHosts() []string {
	return allowedHosts(d.cfg.HTTPAllowedHosts, d.cfg.ClientAddr, d.cfg.PeerAddr)
}

func allowedHosts(allowed []string, clientAddr, peerAddr string) []string {
	out := slices.Clone(allowed)
	for _, addr := range []string{clientAddr, reachableAt(clientAddr, peerAddr)} {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && host != "" && net.ParseIP(host) == nil && !slices.Contains(out, host) {
			out = append(out, host)
		}
	}
	return out
}
