// Package faultproxy is a TCP proxy that adds one-way delay per direction
// and cuts links, for experiments on real processes where the kernel has no
// netem: every peer link of a cluster goes through one Proxy.
//
// A cut is either a Hang (what a partition does: connections stay open but
// nothing crosses until Heal, and new connections wait too; bytes already
// read are held and delivered in order after the heal, as TCP would
// retransmit them) or a Reset (every connection is closed with a reset, and
// new ones are refused until Heal). Bytes are never dropped mid-stream:
// that would corrupt the framing of the protocols on top.
//
// Delay is applied per chunk read, pipelined: a link with 50ms of delay
// still carries as much as the endpoints send.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CutMode says how Cut cuts.
type CutMode int

const (
	// Hang stops everything crossing, connections stay open.
	Hang CutMode = iota + 1
	// Reset closes every connection with a TCP reset and refuses new ones.
	Reset
)

// Proxy forwards connections from its own address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	delayUp, delayDown atomic.Int64 // nanoseconds: client->target, target->client

	mu     sync.Mutex
	cut    CutMode // 0: healed
	healed chan struct{}
	conns  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup

	queued atomic.Int64 // bytes read and not yet delivered
}

// New listens on listenAddr (e.g. 127.0.0.1:0) and forwards to target.
func New(listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, healed: make(chan struct{}), conns: make(map[*pair]struct{})}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's own address: what the client should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay sets the one-way delay of each direction (up: client to target).
func (p *Proxy) SetDelay(up, down time.Duration) {
	p.delayUp.Store(int64(up))
	p.delayDown.Store(int64(down))
}

// Cut cuts the link in the given mode until Heal.
func (p *Proxy) Cut(mode CutMode) {
	p.mu.Lock()
	if p.cut == 0 {
		p.healed = make(chan struct{})
	}
	p.cut = mode
	var victims []*pair
	if mode == Reset {
		for c := range p.conns {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
}

// Heal ends a cut: held bytes go on, in order, with their delay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut != 0 {
		p.cut = 0
		close(p.healed)
	}
}

// Queued is the number of bytes the proxy has read and not yet delivered
// (waiting for their delay, or for a heal).
func (p *Proxy) Queued() int64 { return p.queued.Load() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	victims := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		victims = append(victims, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range victims {
		c.close()
	}
	p.Heal()
	p.wg.Wait()
	return err
}

// state returns the current cut mode and the channel closed at the next heal.
func (p *Proxy) state() (CutMode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut, p.healed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects one client to the target, waiting out a Hang first.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if mode, healed := p.state(); mode == Reset {
		resetConn(client)
		return
	} else if mode == Hang {
		<-healed
	}
	target, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		resetConn(client)
		return
	}
	c := &pair{client: client, target: target}
	p.mu.Lock()
	if p.closed || p.cut == Reset {
		p.mu.Unlock()
		c.reset()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	var dirs sync.WaitGroup
	dirs.Add(2)
	go func() { defer dirs.Done(); p.pipe(c, client, target, &p.delayUp) }()
	go func() { defer dirs.Done(); p.pipe(c, target, client, &p.delayDown) }()
	dirs.Wait()
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pair is one proxied connection.
type pair struct {
	client, target net.Conn
	once           sync.Once
}

func (c *pair) close() {
	c.once.Do(func() { c.client.Close(); c.target.Close() })
}

func (c *pair) reset() {
	c.once.Do(func() { resetConn(c.client); resetConn(c.target) })
}

// resetConn closes a connection with a TCP reset rather than a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst: a reader stamps each chunk with its due time, a
// writer delivers chunks in order once due and while the link is not cut.
func (p *Proxy) pipe(c *pair, src, dst net.Conn, delay *atomic.Int64) {
	queue := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range queue {
			if !p.deliver(dst, ch) {
				c.close()
				for range queue {
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.queued.Add(int64(n))
			queue <- chunk{data: buf[:n], due: time.Now().Add(time.Duration(delay.Load()))}
		}
		if err != nil {
			break
		}
	}
	close(queue)
	<-done
}

// deliver writes one chunk once it is due and the link is not cut; it
// reports false if the link was reset or the write failed.
func (p *Proxy) deliver(dst net.Conn, ch chunk) bool {
	if wait := time.Until(ch.due); wait > 0 {
		time.Sleep(wait)
	}
	for {
		mode, healed := p.state()
		if mode == Reset {
			return false
		}
		if mode != Hang {
			break
		}
		<-healed
	}
	p.queued.Add(-int64(len(ch.data)))
	_, err := dst.Write(ch.data)
	return err == nil
}
