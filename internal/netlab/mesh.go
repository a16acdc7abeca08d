// Package netlab runs availability and latency experiments on real
// clusters: every directed peer link of a cluster goes through a
// faultproxy.Proxy (a Mesh) that the experiment delays or cuts, closed-loop
// read-modify-write clients (one per node, each connected only to its own
// node) record their histories and successes, and the history is checked for
// linearizability with Porcupine. Package bench uses it against caspaxos and
// etcd; the end-to-end tests use it against caspaxos.
package netlab

import (
	"fmt"
	"time"

	"github.com/caspaxos/caspaxos/internal/faultproxy"
)

// Mesh is one proxy per directed link of an n-node cluster: link (i, j)
// carries the connections node i opens to node j, to node j's real peer
// address. A node's own peer list must name Addr(i, j) for node j.
type Mesh struct {
	n     int
	links [][]*faultproxy.Proxy // links[i][j], nil on the diagonal
}

// NewMesh starts the proxies for nodes whose real peer addresses are
// targets. Close it when done, also on failure.
func NewMesh(targets []string) (*Mesh, error) {
	m := &Mesh{n: len(targets), links: make([][]*faultproxy.Proxy, len(targets))}
	for i := range targets {
		m.links[i] = make([]*faultproxy.Proxy, len(targets))
		for j, target := range targets {
			if i == j {
				continue
			}
			p, err := faultproxy.New("127.0.0.1:0", target)
			if err != nil {
				m.Close()
				return nil, fmt.Errorf("netlab: proxy %d->%d: %w", i, j, err)
			}
			m.links[i][j] = p
		}
	}
	return m, nil
}

// Addr is the address node i dials to reach node j.
func (m *Mesh) Addr(i, j int) string { return m.links[i][j].Addr() }

// SetDelay sets the one-way delay between nodes i and j, both ways, on both
// of their links (a link carries its requests one way and the transport's
// acknowledgements the other).
func (m *Mesh) SetDelay(i, j int, oneWay time.Duration) {
	m.links[i][j].SetDelay(oneWay, oneWay)
	m.links[j][i].SetDelay(oneWay, oneWay)
}

// Isolate cuts every link from and to node i.
func (m *Mesh) Isolate(i int, mode faultproxy.CutMode) {
	for j := range m.n {
		if j != i {
			m.links[i][j].Cut(mode)
			m.links[j][i].Cut(mode)
		}
	}
}

// Heal ends every cut.
func (m *Mesh) Heal() {
	for i := range m.n {
		for j := range m.n {
			if i != j {
				m.links[i][j].Heal()
			}
		}
	}
}

// Close stops every proxy and closes its connections.
func (m *Mesh) Close() {
	for _, row := range m.links {
		for _, p := range row {
			if p != nil {
				p.Close()
			}
		}
	}
}
