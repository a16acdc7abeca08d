package protocol

// readOp is a read on the fast path (PROTOCOL.md §6): one round trip, no
// promise, nothing persisted.
type readOp struct {
	req     *request
	key     string
	ballot  Ballot // correlates replies; promises nothing
	cfg     Config // the configuration it was sent with
	replied nodeSet
	count   map[Ballot]int
	states  map[Ballot]State
}

// Read asks for the current state of key. If the key has changes waiting or
// in flight here, the read joins them as an identity change; otherwise it
// tries the fast path first.
func (p *Proposer) Read(id ReqID, key string) {
	r := p.newRequest(id, key, nil)
	if p.keys[key] != nil {
		p.enqueue(r)
		return
	}
	rd := &readOp{
		req:    r,
		key:    key,
		ballot: p.newBallot(),
		cfg:    p.cfg,
		count:  make(map[Ballot]int),
		states: make(map[Ballot]State),
	}
	r.read = rd
	p.reads[rd.ballot] = rd
	p.send(MsgRead, rd.cfg.AcceptSet, Message{Key: key, Ballot: rd.ballot})
	p.timer(TimerRead, key, rd.ballot, 0)
}

func (p *Proposer) readQuorum(rd *readOp) int {
	return max(1, rd.cfg.ReadQuorum()-p.bugs.ReadQuorumShortBy)
}

func (p *Proposer) stepRead(rd *readOp, m Message) {
	if rd.replied.has(m.From) || !rd.cfg.inAcceptSet(m.From) {
		return
	}
	rd.replied.add(m.From)
	rd.count[m.Accepted]++
	rd.states[m.Accepted] = m.State
	need := p.readQuorum(rd)
	if rd.count[m.Accepted] >= need {
		delete(p.reads, rd.ballot)
		p.answerAt(rd.req, Result{State: m.State, Ballot: m.Accepted})
		return
	}
	best := 0
	for _, n := range rd.count {
		best = max(best, n)
	}
	if best+len(rd.cfg.AcceptSet)-len(rd.replied) < need {
		p.fallBack(rd)
	}
}

// fallBack sends a read that cannot finish on the fast path through the
// normal path as the identity change x -> x.
func (p *Proposer) fallBack(rd *readOp) {
	delete(p.reads, rd.ballot)
	rd.req.read = nil
	p.enqueue(rd.req)
}
