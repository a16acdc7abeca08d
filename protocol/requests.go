package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Exactly-once writes (COORDINATION.md, "Exactly-once writes").
//
// A register may keep a table of the recent request IDs that changed it,
// each with the version it gave the register, so that a repeated request
// is answered with its first outcome instead of being applied again. The
// table travels in State.Requests, encoded (EncodeRequests), and is
// written by the same change that applies the request: a change is run
// on the state the proposer read, and the state it computes is chosen
// whole or not at all, so the check and the record can never be split by
// a concurrent change, a retry or a crash. Composition stays correct: each
// composed change sees the table its predecessors left.
//
// Times are milliseconds since the Unix epoch. A record is ordered by its
// request's issue time, which the request itself carries (a client's
// clock); the proposer's time, fixed before the change runs (a change
// never reads a clock: it may run more than once), only decides when a
// record is old enough to prune. The table never depends on any clock
// being right for its safety; see RequestCheck.

// The table's bounds.
const (
	// MaxRequestIDBytes bounds a request ID.
	MaxRequestIDBytes = 64
	// MaxRequestRecords bounds a register's table. A request recorded
	// when the table is full evicts the oldest record and raises the
	// horizon past it (see RequestTable.Horizon), so a retry of the
	// evicted request is refused, never applied again.
	MaxRequestRecords = 1024
	// MaxRecordValueBytes bounds the value a record may keep (an
	// increment's result, so that a repeat answers with it).
	MaxRecordValueBytes = 32
	// requestsFormat is the only encoding of a table this build reads
	// and writes; its first byte.
	requestsFormat byte = 1
)

// RequestOutcome is what became of a recorded request.
type RequestOutcome uint8

const (
	// RequestApplied: the request changed the register, to Version.
	RequestApplied RequestOutcome = iota + 1
	// RequestNotApplied: an outcome query found the request unknown and
	// recorded that it was not applied, so it never will be: a late
	// attempt of it is refused.
	RequestNotApplied
)

// RequestRecord is one request in a register's table.
type RequestRecord struct {
	ID      string
	Outcome RequestOutcome
	// Version is the version the request gave the register (0 for
	// RequestNotApplied).
	Version uint64
	// IssuedMillis is the time the request was first issued, which it
	// carries: the table's order.
	IssuedMillis int64
	// Value is the value the request wrote, kept only where the request
	// itself does not carry it (an increment): at most
	// MaxRecordValueBytes, nil for most records.
	Value []byte
}

// RequestTable is a register's table of recent requests.
//
// Horizon is the table's low-water mark: every record ever removed from
// it (pruned when older than the window, or evicted when the table was
// full) was of a request issued before Horizon. A request issued before
// it is refused (RequestCheck), because its record may be gone.
type RequestTable struct {
	Horizon int64
	Records []RequestRecord
}

// ErrRequests: a register's request table does not decode.
var ErrRequests = errors.New("caspaxos/protocol: bad request table")

// Find returns the record of id.
func (t RequestTable) Find(id string) (RequestRecord, bool) {
	for _, r := range t.Records {
		if r.ID == id {
			return r, true
		}
	}
	return RequestRecord{}, false
}

// Newest is the latest IssuedMillis of the table's records and its
// horizon.
func (t RequestTable) Newest() int64 {
	n := t.Horizon
	for _, r := range t.Records {
		n = max(n, r.IssuedMillis)
	}
	return n
}

// Prune removes the records of requests issued before cutoff and raises
// Horizon to cutoff (it never lowers it). It returns a new table; t is not changed.
func (t RequestTable) Prune(cutoff int64) RequestTable {
	out := RequestTable{Horizon: max(t.Horizon, cutoff)}
	if len(t.Records) > 0 {
		// Room for the record a write adds next (With) without growing.
		out.Records = make([]RequestRecord, 0, len(t.Records)+1)
	}
	for _, r := range t.Records {
		if r.IssuedMillis >= out.Horizon {
			out.Records = append(out.Records, r)
		}
	}
	return out
}

// With returns t with r added: when t is full, the records issued first
// are evicted first and Horizon raised past them. t is not changed.
func (t RequestTable) With(r RequestRecord) RequestTable {
	out := RequestTable{Horizon: t.Horizon, Records: make([]RequestRecord, len(t.Records), len(t.Records)+1)}
	copy(out.Records, t.Records)
	for len(out.Records) >= MaxRequestRecords {
		oldest := 0
		for i, x := range out.Records {
			if x.IssuedMillis < out.Records[oldest].IssuedMillis {
				oldest = i
			}
		}
		out.Horizon = max(out.Horizon, out.Records[oldest].IssuedMillis+1)
		out.Records = append(out.Records[:oldest], out.Records[oldest+1:]...)
	}
	out.Records = append(out.Records, r)
	return out
}

// EncodeRequests returns t's encoding: the format byte (1), the horizon
// (varint), the number of records (uvarint), then per record the ID's
// length (uvarint) and bytes, the outcome (1 byte), the version (uvarint),
// IssuedMillis (varint), the value's length (uvarint) and bytes.
func EncodeRequests(t RequestTable) []byte {
	b := make([]byte, 0, 16+len(t.Records)*(24+MaxRequestIDBytes/2))
	b = append(b, requestsFormat)
	b = binary.AppendVarint(b, t.Horizon)
	b = binary.AppendUvarint(b, uint64(len(t.Records)))
	for _, r := range t.Records {
		b = binary.AppendUvarint(b, uint64(len(r.ID)))
		b = append(b, r.ID...)
		b = append(b, byte(r.Outcome))
		b = binary.AppendUvarint(b, r.Version)
		b = binary.AppendVarint(b, r.IssuedMillis)
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

// DecodeRequests decodes a table; nil or empty input is the empty table
// (a register written before tables existed). It refuses an unknown
// format, IDs out of bounds, duplicate IDs, unknown outcomes, more than
// MaxRequestRecords records and trailing bytes.
func DecodeRequests(b []byte) (RequestTable, error) {
	if len(b) == 0 {
		return RequestTable{}, nil
	}
	if b[0] != requestsFormat {
		return RequestTable{}, fmt.Errorf("%w: unknown format %d (this build reads %d)", ErrRequests, b[0], requestsFormat)
	}
	d := decoder{b: b[1:]}
	t := RequestTable{Horizon: d.varint()}
	n := d.uvarint()
	if d.err == nil && n > MaxRequestRecords {
		return RequestTable{}, fmt.Errorf("%w: %d records, limit %d", ErrRequests, n, MaxRequestRecords)
	}
	// A set, not t.Find per record: a full table would cost half a
	// million comparisons, and every change of a key with IDs decodes it.
	seen := make(map[string]struct{}, min(n, MaxRequestRecords))
	if n > 0 {
		t.Records = make([]RequestRecord, 0, min(n, MaxRequestRecords))
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var r RequestRecord
		l := d.uvarint()
		if d.err == nil && (l == 0 || l > MaxRequestIDBytes) {
			return RequestTable{}, fmt.Errorf("%w: record %d: ID of %d bytes is not within 1..%d", ErrRequests, i, l, MaxRequestIDBytes)
		}
		r.ID = string(d.bytes(int(l)))
		r.Outcome = RequestOutcome(d.byte())
		r.Version = d.uvarint()
		r.IssuedMillis = d.varint()
		vl := d.uvarint()
		if d.err == nil && vl > MaxRecordValueBytes {
			return RequestTable{}, fmt.Errorf("%w: record %d: value of %d bytes, limit %d", ErrRequests, i, vl, MaxRecordValueBytes)
		}
		if v := d.bytes(int(vl)); vl > 0 {
			r.Value = append([]byte(nil), v...)
		}
		if d.err != nil {
			break
		}
		if r.Outcome != RequestApplied && r.Outcome != RequestNotApplied {
			return RequestTable{}, fmt.Errorf("%w: record %d: unknown outcome %d", ErrRequests, i, r.Outcome)
		}
		if _, dup := seen[r.ID]; dup {
			return RequestTable{}, fmt.Errorf("%w: request ID %q recorded twice", ErrRequests, r.ID)
		}
		seen[r.ID] = struct{}{}
		t.Records = append(t.Records, r)
	}
	if d.err != nil {
		return RequestTable{}, fmt.Errorf("%w: %w", ErrRequests, d.err)
	}
	if len(d.b) != 0 {
		return RequestTable{}, fmt.Errorf("%w: %d trailing bytes", ErrRequests, len(d.b))
	}
	return t, nil
}

// decoder reads varints and bytes, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// RequestWindow bounds how long a register remembers a request. Both
// durations are in milliseconds.
type RequestWindow struct {
	// WindowMillis: a request issued longer ago than this is refused, and
	// its record may be pruned.
	WindowMillis int64
	// SkewMillis bounds how far the clock that stamped a request's issue
	// time may be ahead of a proposer's.
	SkewMillis int64
}

// RequestVerdict is RequestCheck's answer.
type RequestVerdict uint8

const (
	// RequestNew: the request is not in the table and young enough: run it.
	RequestNew RequestVerdict = iota + 1
	// RequestSeen: the table holds its record; answer with it.
	RequestSeen
	// RequestTooOld: not in the table, and issued so long ago that its
	// record may have been removed: refuse it.
	RequestTooOld
	// RequestFromFuture: its issue time is ahead of the proposer's clock
	// by more than the skew bound: refuse it.
	RequestFromFuture
)

// RequestCheck is the rule a change applies before it runs a request
// issued at issuedMillis, at the proposer's time nowMillis.
//
// Why no request is applied twice, whatever the clocks: every request
// applied is recorded, with its issue time, in the state it changes, and
// a record is removed only when its issue time is below the table's
// Horizon, which never falls. So a request the table does not hold and
// whose issue time is at or above Horizon was never applied to this
// register; one issued below it is refused (RequestTooOld). A request
// issued longer ago than the window is refused too (the rule that still
// holds once deletion GC has removed a register and its table: see
// RequestsHeld), and so is one stamped further ahead of the proposer's
// clock than the skew bound, whose record would otherwise be kept for
// longer than the window.
func RequestCheck(t RequestTable, id string, issuedMillis, nowMillis int64, w RequestWindow) (RequestRecord, RequestVerdict) {
	if r, ok := t.Find(id); ok {
		return r, RequestSeen
	}
	switch {
	case issuedMillis > nowMillis+w.SkewMillis:
		return RequestRecord{}, RequestFromFuture
	case issuedMillis < nowMillis-w.WindowMillis, issuedMillis < t.Horizon:
		return RequestRecord{}, RequestTooOld
	}
	return RequestRecord{}, RequestNew
}

// RequestsHeld reports whether deletion GC must keep a tombstone whose
// state is s, decided at GC's time nowMillis after its step 1 and before
// its step 2: while a request its table knows might still be retried. A
// register removed loses its table, and a retry then meets only the
// window rule of RequestCheck. Step 2 ends every change of the key in
// flight on any proposer (Proposer.Forget), so a change that finds the
// register removed was submitted after nowMillis, at a proposer whose
// clock may be behind GC's by the skew. So a tombstone is held until
// window + skew past the newest issue time its table holds (and its
// horizon). A table that does not decode holds the tombstone.
func RequestsHeld(s State, nowMillis int64, w RequestWindow) bool {
	if len(s.Requests) == 0 {
		return false
	}
	t, err := DecodeRequests(s.Requests)
	if err != nil {
		return true
	}
	return nowMillis <= t.Newest()+w.WindowMillis+w.SkewMillis
}
