package kv

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caspaxos/caspaxos/protocol"
)

// Exactly-once writes (COORDINATION.md, "Exactly-once writes"; the rule is
// protocol.RequestCheck, the table protocol.RequestTable).
//
// A write may carry a request ID: a UUID of version 7 (RFC 9562), whose
// first 48 bits are the Unix time in milliseconds at which the client
// first issued it. The register keeps the IDs of the writes that changed
// it, with the version each gave it, for the idempotency window; a
// repeated ID is answered with its first outcome and changes nothing. The
// issue time is what lets a retry older than the window be refused rather
// than applied a second time after its record was pruned.

// DefaultIdempotencyWindow is how long a register keeps a request ID
// (--idempotency-window); a retry issued longer ago is refused.
const DefaultIdempotencyWindow = 10 * time.Minute

// DefaultMaxClockSkew bounds the clock skew between the cluster's nodes
// and its clients' clocks that stamp request IDs (--max-clock-skew).
const DefaultMaxClockSkew = 500 * time.Millisecond

// Idempotency is the window of exactly-once writes.
type Idempotency struct {
	Window       time.Duration
	MaxClockSkew time.Duration
}

// DefaultIdempotency returns the defaults.
func DefaultIdempotency() Idempotency {
	return Idempotency{Window: DefaultIdempotencyWindow, MaxClockSkew: DefaultMaxClockSkew}
}

// Validate refuses a window shorter than a second or longer than a week,
// or a skew that is negative or not well under the window.
func (c Idempotency) Validate() error {
	switch {
	case c.Window < time.Second || c.Window > 7*24*time.Hour:
		return fmt.Errorf("caspaxos: idempotency window %v is not within 1s..168h", c.Window)
	case c.MaxClockSkew < 0 || 4*c.MaxClockSkew >= c.Window:
		return fmt.Errorf("caspaxos: max clock skew %v must be at least 0 and under a quarter of the idempotency window %v", c.MaxClockSkew, c.Window)
	}
	return nil
}

// RequestWindow is c in the core's units.
func (c Idempotency) RequestWindow() protocol.RequestWindow {
	return protocol.RequestWindow{WindowMillis: c.Window.Milliseconds(), SkewMillis: c.MaxClockSkew.Milliseconds()}
}

var (
	// ErrBadRequestID: a request ID that is not a UUID of version 7.
	ErrBadRequestID = errors.New("caspaxos: bad request ID: it must be a UUID of version 7 (RFC 9562), whose timestamp is the time the write was first issued")
	// ErrRequestExpired: the request was issued longer ago than the
	// idempotency window (or before its key's table was pruned past it),
	// and its ID is no longer known: it is refused, since it may have been
	// applied already. Nothing was applied now.
	ErrRequestExpired = errors.New("caspaxos: request expired: its ID is older than the idempotency window, so a retry cannot be told from a second apply; nothing was applied now")
	// ErrRequestFromFuture: the request's issue time is ahead of the
	// node's clock by more than the clock-skew bound; nothing was applied.
	ErrRequestFromFuture = errors.New("caspaxos: request ID from the future: its timestamp is ahead of the node's clock by more than the allowed skew; check the client's clock; nothing was applied")
	// ErrRequestNotApplied: an outcome query already declared this
	// request not applied; it never will be. Nothing was applied.
	ErrRequestNotApplied = errors.New("caspaxos: request not applied: an outcome query recorded it as not applied, so it never will be")
)

// Request identifies one write for exactly-once: its ID (the UUID's 16
// bytes, as the register's table keeps it), its text, and the time it was
// first issued, from the ID's timestamp.
type Request struct {
	ID           string
	Text         string
	IssuedMillis int64
}

// ParseRequestID checks that s is a UUID of version 7 in its canonical
// text form (8-4-4-4-12 hex digits, lower or upper case) and returns it
// with its issue time.
func ParseRequestID(s string) (Request, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return Request{}, fmt.Errorf("%w: %.40q", ErrBadRequestID, s)
	}
	var u [16]byte
	hexs := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(hexs)); err != nil {
		return Request{}, fmt.Errorf("%w: %.40q", ErrBadRequestID, s)
	}
	if u[6]>>4 != 7 || u[8]>>6 != 2 {
		return Request{}, fmt.Errorf("%w: %.40q is not of version 7", ErrBadRequestID, s)
	}
	var ms int64
	for _, b := range u[:6] {
		ms = ms<<8 | int64(b)
	}
	return Request{ID: string(u[:]), Text: s, IssuedMillis: ms}, nil
}

// NewRequestID returns a fresh UUID of version 7 for a write first issued
// at now, with 74 random bits from rand (crypto/rand.Reader in the client).
func NewRequestID(now time.Time, rand io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(rand, u[6:]); err != nil {
		return "", fmt.Errorf("caspaxos: request ID: %w", err)
	}
	ms := now.UnixMilli()
	for i := 5; i >= 0; i-- {
		u[i] = byte(ms)
		ms >>= 8
	}
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// DuplicateRequestError is how a change answers a request its register
// has already applied: a refusal (nothing changes) carrying the first
// outcome. The node turns it into that outcome (Outcome), so clients see
// the first answer again.
type DuplicateRequestError struct {
	Record protocol.RequestRecord
	// State is the first outcome's state: the register as it is when
	// nothing changed it since; otherwise the version with what the
	// operation wrote (an increment's result is kept in its record).
	State protocol.State
}

func (e *DuplicateRequestError) Error() string {
	return fmt.Sprintf("caspaxos: request %x was already applied, at version %d", e.Record.ID, e.Record.Version)
}

// Outcome returns the first outcome of a repeated request: its state, and
// true, when err is a *DuplicateRequestError.
func Outcome(err error) (protocol.State, bool) {
	var d *DuplicateRequestError
	if errors.As(err, &d) {
		return d.State, true
	}
	return protocol.State{}, false
}

// Idempotent wraps the change of op (one of the writes) so that it runs
// at most once for req: at the proposer's time nowMillis, fixed before the
// change runs, it applies protocol.RequestCheck to the register's table
// and either answers a known request with its first outcome
// (*DuplicateRequestError), refuses a stale one, or runs the change and,
// if it changed the register, records req with the version given, in the
// same state (pruning records older than the window).
func Idempotent(op Op, req Request, nowMillis int64, w protocol.RequestWindow) protocol.Change {
	ch := op.Change()
	return func(cur protocol.State) (protocol.Write, error) {
		rec, verdict, err := protocol.RequestCheck(cur, req.ID, req.IssuedMillis, nowMillis, w)
		if err != nil {
			return protocol.Write{}, err
		}
		switch verdict {
		case protocol.RequestSeen:
			if rec.Outcome != protocol.RequestApplied {
				return protocol.Write{}, ErrRequestNotApplied
			}
			return protocol.Write{}, &DuplicateRequestError{Record: rec, State: firstOutcome(op, rec, cur)}
		case protocol.RequestTooOld:
			return protocol.Write{}, ErrRequestExpired
		case protocol.RequestFromFuture:
			return protocol.Write{}, ErrRequestFromFuture
		}
		wr, err := ch(cur)
		if err != nil || wr.Kind == protocol.WriteKeep {
			return wr, err
		}
		wr.PruneBelow = nowMillis - w.WindowMillis
		wr.Record = protocol.RequestRecord{ID: req.ID, Outcome: protocol.RequestApplied, IssuedMillis: req.IssuedMillis}
		if op.Kind == OpIncrement && len(wr.Value) <= protocol.MaxRecordValueBytes {
			wr.Record.Value = wr.Value // the result, which the request does not carry
		}
		return wr, nil
	}
}

// firstOutcome is the state a repeated op answers with.
func firstOutcome(op Op, rec protocol.RequestRecord, cur protocol.State) protocol.State {
	if cur.Version == rec.Version {
		return protocol.State{Value: cur.Value, Version: cur.Version, Deleted: cur.Deleted, Created: cur.Created, Attrs: cur.Attrs}
	}
	s := protocol.State{Version: rec.Version}
	switch op.Kind {
	case OpPut, OpCreate, OpCompareAndSwap, OpPutFlags, OpCompareAndSwapFlags, OpKeyAcquire, OpKeyRelease:
		s.Value = op.Value
	case OpDelete:
		s.Deleted = true
	case OpIncrement:
		s.Value = rec.Value
	}
	return s
}

// OutcomeQuery is the change of an outcome query for req: was it applied?
// It is run as a change, never as a read: its prepare fences every
// attempt of the request still in flight. A request the table knows
// leaves the register as it is; an unknown one is recorded as not applied
// (so no late attempt can apply it after the answer); one too old to
// tell is refused with ErrRequestExpired. The answer is read from the
// resulting state with RequestOutcome.
func OutcomeQuery(req Request, nowMillis int64, w protocol.RequestWindow) protocol.Change {
	return func(cur protocol.State) (protocol.Write, error) {
		_, verdict, err := protocol.RequestCheck(cur, req.ID, req.IssuedMillis, nowMillis, w)
		if err != nil {
			return protocol.Write{}, err
		}
		switch verdict {
		case protocol.RequestSeen:
			return protocol.Write{Kind: protocol.WriteKeep}, nil
		case protocol.RequestTooOld:
			return protocol.Write{}, ErrRequestExpired
		case protocol.RequestFromFuture:
			return protocol.Write{}, ErrRequestFromFuture
		}
		return protocol.Write{
			Kind:       protocol.WriteKeep,
			PruneBelow: nowMillis - w.WindowMillis,
			Record:     protocol.RequestRecord{ID: req.ID, Outcome: protocol.RequestNotApplied, IssuedMillis: req.IssuedMillis},
		}, nil
	}
}

// RequestOutcome reads the record of the request whose ID is text from a
// state an outcome query left; false when the state does not hold it.
func RequestOutcome(s protocol.State, text string) (protocol.RequestRecord, bool) {
	req, err := ParseRequestID(text)
	if err != nil {
		return protocol.RequestRecord{}, false
	}
	rec, ok, _, err := protocol.FindRequest(s.Requests, req.ID)
	return rec, ok && err == nil
}
