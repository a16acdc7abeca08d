package client

import (
	"time"
)

// Silent endpoints. A node cut off by a partition that drops packets
// (no reset) leaves its connection looking ready: a call sent there waits
// for its deadline. The client then suspects that endpoint for
// Config.SuspectFor, and later calls try it last, so that one silent node
// costs the calls in flight when it went silent, not every later one. The
// gRPC keepalive (Config.KeepaliveTime) then finds the connection dead and
// closes it, and the endpoint is tried again once it reconnects. A node
// that refuses a request as overloaded is suspected the same way.

// suspect marks endpoint idx to be tried last until SuspectFor has passed.
func (c *Client) suspect(idx int) {
	c.suspects[idx].Store(time.Now().Add(c.cfg.SuspectFor).UnixNano())
}

// trust clears a suspicion of endpoint idx (it answered).
func (c *Client) trust(idx int) {
	if c.suspects[idx].Load() != 0 {
		c.suspects[idx].Store(0)
	}
}

func (c *Client) suspected(idx int, now int64) bool {
	until := c.suspects[idx].Load()
	return until != 0 && now < until
}

// order is the order in which a call tries the endpoints: from start (the
// preferred), with routed (a write's home, -1 for none) first, and the
// suspected ones last.
func (c *Client) order(start, routed int) []int {
	n := len(c.conns)
	out := make([]int, 0, n)
	if routed >= 0 {
		out = append(out, routed)
	}
	for i := range n {
		if idx := (start + i) % n; idx != routed {
			out = append(out, idx)
		}
	}
	now := time.Now().UnixNano()
	trusted, suspected := out[:0:0], []int(nil)
	for _, idx := range out {
		if c.suspected(idx, now) {
			suspected = append(suspected, idx)
		} else {
			trusted = append(trusted, idx)
		}
	}
	return append(trusted, suspected...)
}
