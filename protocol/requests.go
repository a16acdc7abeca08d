package protocol

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
// clock); the proposer's time, fixed before each attempt computes the
// change (a change never reads a clock: it may run more than once; see
// Proposer.ProposeTimed), only decides when a record is old enough to
// prune. The table never depends on any clock
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

// DecodeRequests decodes a table; nil or empty input is the empty table
// (a register written before tables existed). It refuses what
// ValidateRequests refuses. The records' IDs share one string and their
// values one copy of b, so a full table costs a few allocations, not two
// per record.
func DecodeRequests(b []byte) (RequestTable, error) {
	n, err := ValidateRequests(b)
	if err != nil || len(b) == 0 {
		return RequestTable{}, err
	}
	sc, _ := newRequestScanner(b)
	t := RequestTable{Horizon: sc.horizon}
	if n == 0 {
		return t, nil
	}
	t.Records = make([]RequestRecord, 0, n)
	ids, values := string(b), append([]byte(nil), b...)
	for {
		raw, ok := sc.next()
		if !ok {
			break
		}
		r := RequestRecord{ID: ids[raw.idAt : raw.idAt+raw.idLen], Outcome: raw.outcome, Version: raw.version, IssuedMillis: raw.issued}
		if raw.valueLen > 0 {
			r.Value = values[raw.valueAt : raw.valueAt+raw.valueLen : raw.valueAt+raw.valueLen]
		}
		t.Records = append(t.Records, r)
	}
	return t, nil
}

// ValidateRequests checks an encoded table without decoding it, and
// allocates nothing: what every peer message that carries a table goes
// through. It refuses an unknown format, IDs out of bounds, duplicate IDs,
// unknown outcomes, values past MaxRecordValueBytes, more than
// MaxRequestRecords records and trailing bytes. It returns the number of
// records.
func ValidateRequests(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	sc, err := newRequestScanner(b)
	if err != nil {
		return 0, err
	}
	// Duplicates: an open-addressed set of the records' IDs (FNV-1a),
	// on the stack. A map of strings would cost an allocation per record.
	var (
		ids   [MaxRequestRecords][2]uint32 // offset and length of record i's ID
		slots [2 * MaxRequestRecords]uint16
		n     int
	)
	for {
		raw, ok := sc.next()
		if !ok {
			break
		}
		id := b[raw.idAt : raw.idAt+raw.idLen]
		for h := fnv1a(id) % uint64(len(slots)); ; h = (h + 1) % uint64(len(slots)) {
			j := slots[h]
			if j == 0 {
				slots[h] = uint16(n + 1)
				break
			}
			o := ids[j-1]
			if string(b[o[0]:o[0]+o[1]]) == string(id) {
				return 0, fmt.Errorf("%w: request ID %q recorded twice", ErrRequests, id)
			}
		}
		ids[n] = [2]uint32{uint32(raw.idAt), uint32(raw.idLen)}
		n++
	}
	if err := sc.done(); err != nil {
		return 0, err
	}
	return n, nil
}

func fnv1a[T string | []byte](b T) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(b) {
		h ^= uint64(b[i])
		h *= 1099511628211
	}
	return h
}

// FindRequest returns the record of id in an encoded table without
// decoding the rest, and the table's horizon. b is trusted to be a table
// that ValidateRequests accepts (peers' and storage's tables are checked
// where they enter; the core writes only valid ones); a table that does
// not parse is still refused with ErrRequests.
func FindRequest(b []byte, id string) (rec RequestRecord, found bool, horizon int64, err error) {
	if len(b) == 0 {
		return RequestRecord{}, false, 0, nil
	}
	sc, err := newRequestScanner(b)
	if err != nil {
		return RequestRecord{}, false, 0, err
	}
	for {
		raw, ok := sc.next()
		if !ok {
			break
		}
		if string(b[raw.idAt:raw.idAt+raw.idLen]) == id {
			rec = RequestRecord{ID: id, Outcome: raw.outcome, Version: raw.version, IssuedMillis: raw.issued}
			if raw.valueLen > 0 {
				rec.Value = append([]byte(nil), b[raw.valueAt:raw.valueAt+raw.valueLen]...)
			}
			return rec, true, sc.horizon, nil
		}
	}
	if err := sc.done(); err != nil {
		return RequestRecord{}, false, 0, err
	}
	return RequestRecord{}, false, sc.horizon, nil
}

// spliceRequests returns EncodeRequests(DecodeRequests(b).Prune(cutoff).With(r))
// without decoding b: the records that survive are copied as they are
// encoded. This is what a write with a request ID costs on a full table:
// one pass over its bytes and one copy, where decoding would allocate per
// record. b is trusted as in FindRequest, and r's ID must not be in it.
func spliceRequests(b []byte, cutoff int64, r RequestRecord) ([]byte, error) {
	// The header goes in front of the records once their number is
	// known: room for the longest is kept.
	const headerMax = 1 + binary.MaxVarintLen64 + binary.MaxVarintLen16
	out := make([]byte, headerMax, headerMax+len(b)+24+len(r.ID)+len(r.Value))
	horizon := max(0, cutoff) // an empty table's horizon is 0
	if len(b) > 0 {
		sc, err := newRequestScanner(b)
		if err != nil {
			return nil, err
		}
		horizon = max(sc.horizon, cutoff)
		// The survivors of the prune, copied in order; and the one With
		// evicts when they fill the table (it holds at most
		// MaxRequestRecords, so adding r evicts at most one): the first
		// issued, the earliest recorded among equals.
		survivors := 0
		var oldest int64
		var oldestAt, oldestEnd int // in out
		for {
			raw, ok := sc.next()
			if !ok {
				break
			}
			if raw.issued < horizon {
				continue
			}
			if survivors == 0 || raw.issued < oldest {
				oldest, oldestAt, oldestEnd = raw.issued, len(out), len(out)+raw.end-raw.at
			}
			survivors++
			out = append(out, b[raw.at:raw.end]...)
		}
		if err := sc.done(); err != nil {
			return nil, err
		}
		if survivors == MaxRequestRecords {
			horizon = max(horizon, oldest+1)
			out = append(out[:oldestAt], out[oldestEnd:]...)
			survivors--
		}
		out = appendRequest(out, r)
		return withRequestsHeader(out, headerMax, horizon, survivors+1), nil
	}
	out = appendRequest(out, r)
	return withRequestsHeader(out, headerMax, horizon, 1), nil
}

// withRequestsHeader writes a table's header just before out[at:], the
// encoding of its n records, and returns the table from the header on.
func withRequestsHeader(out []byte, at int, horizon int64, n int) []byte {
	var h [1 + binary.MaxVarintLen64 + binary.MaxVarintLen16]byte
	hb := append(h[:0], requestsFormat)
	hb = binary.AppendVarint(hb, horizon)
	hb = binary.AppendUvarint(hb, uint64(n))
	start := at - len(hb)
	copy(out[start:], hb)
	return out[start:]
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
		b = appendRequest(b, r)
	}
	return b
}

func appendRequest(b []byte, r RequestRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.ID)))
	b = append(b, r.ID...)
	b = append(b, byte(r.Outcome))
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendVarint(b, r.IssuedMillis)
	b = binary.AppendUvarint(b, uint64(len(r.Value)))
	return append(b, r.Value...)
}

// requestScanner walks an encoded table record by record, checking each
// record's bounds, without allocating. It reads by position, with a fast
// path for one-byte varints: it runs over every record of a table on each
// write with a request ID.
type requestScanner struct {
	b       []byte
	pos     int
	err     error
	horizon int64
	n, i    uint64 // records announced, records read
}

// rawRecord is one record as it lies in the encoding: offsets into it.
type rawRecord struct {
	at, end           int // the record's bytes
	idAt, idLen       int
	outcome           RequestOutcome
	version           uint64
	issued            int64
	valueAt, valueLen int
}

var errTruncated = errors.New("truncated")

// newRequestScanner reads a non-empty table's header.
func newRequestScanner(b []byte) (requestScanner, error) {
	if b[0] != requestsFormat {
		return requestScanner{}, fmt.Errorf("%w: unknown format %d (this build reads %d)", ErrRequests, b[0], requestsFormat)
	}
	sc := requestScanner{b: b, pos: 1}
	sc.horizon = sc.varint()
	sc.n = sc.uvarint()
	if sc.err == nil && sc.n > MaxRequestRecords {
		return requestScanner{}, fmt.Errorf("%w: %d records, limit %d", ErrRequests, sc.n, MaxRequestRecords)
	}
	return sc, nil
}

// next reads the next record; false at the end or at the first error
// (done reports it).
func (sc *requestScanner) next() (rawRecord, bool) {
	if sc.i >= sc.n || sc.err != nil {
		return rawRecord{}, false
	}
	r := rawRecord{at: sc.pos}
	l := sc.uvarint()
	if sc.err == nil && (l == 0 || l > MaxRequestIDBytes) {
		sc.err = fmt.Errorf("record %d: ID of %d bytes is not within 1..%d", sc.i, l, MaxRequestIDBytes)
		return rawRecord{}, false
	}
	r.idAt, r.idLen = sc.pos, int(l)
	sc.skip(int(l))
	if sc.pos < len(sc.b) {
		r.outcome = RequestOutcome(sc.b[sc.pos])
		sc.pos++
	} else if sc.err == nil {
		sc.err = errTruncated
	}
	r.version = sc.uvarint()
	r.issued = sc.varint()
	vl := sc.uvarint()
	if sc.err == nil && vl > MaxRecordValueBytes {
		sc.err = fmt.Errorf("record %d: value of %d bytes, limit %d", sc.i, vl, MaxRecordValueBytes)
	}
	r.valueAt, r.valueLen = sc.pos, int(vl)
	sc.skip(int(vl))
	if sc.err != nil {
		return rawRecord{}, false
	}
	if r.outcome != RequestApplied && r.outcome != RequestNotApplied {
		sc.err = fmt.Errorf("record %d: unknown outcome %d", sc.i, r.outcome)
		return rawRecord{}, false
	}
	r.end = sc.pos
	sc.i++
	return r, true
}

// done reports the first error of the walk, or trailing bytes once every
// record was read.
func (sc *requestScanner) done() error {
	switch {
	case sc.err != nil:
		return fmt.Errorf("%w: %w", ErrRequests, sc.err)
	case sc.pos != len(sc.b):
		return fmt.Errorf("%w: %d trailing bytes", ErrRequests, len(sc.b)-sc.pos)
	}
	return nil
}

func (sc *requestScanner) uvarint() uint64 {
	v, p := uvarintAt(sc.b, sc.pos)
	if p < 0 {
		sc.err = cmp.Or(sc.err, errTruncated)
		return 0
	}
	sc.pos = p
	return v
}

func (sc *requestScanner) varint() int64 {
	ux := sc.uvarint() // binary.Varint's zigzag
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// uvarintAt reads the uvarint at b[p:] and returns the position after it,
// or -1; one byte, as most of a table's varints are, without a call.
func uvarintAt(b []byte, p int) (uint64, int) {
	if p < len(b) && b[p] < 0x80 {
		return uint64(b[p]), p + 1
	}
	return uvarintSlowAt(b, p)
}

func uvarintSlowAt(b []byte, p int) (uint64, int) {
	if p < 0 || p > len(b) {
		return 0, -1
	}
	v, n := binary.Uvarint(b[p:])
	if n <= 0 {
		return 0, -1
	}
	return v, p + n
}

func (sc *requestScanner) skip(n int) {
	if sc.err == nil && len(sc.b)-sc.pos < n {
		sc.err = errTruncated
	}
	if sc.err == nil {
		sc.pos += n
	}
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
//
// The table is cur's (State.Requests), looked up without decoding it:
// through its index when cur carries one (a state a write with a request
// ID left, in a composed batch or the proposer's cache), otherwise by
// walking its encoding (FindRequest); one that does not parse is refused
// with ErrRequests.
func RequestCheck(cur State, id string, issuedMillis, nowMillis int64, w RequestWindow) (RequestRecord, RequestVerdict, error) {
	r, ok, horizon, err := findRequest(cur, id)
	switch {
	case err != nil:
		return RequestRecord{}, 0, err
	case ok:
		return r, RequestSeen, nil
	case issuedMillis > nowMillis+w.SkewMillis:
		return RequestRecord{}, RequestFromFuture, nil
	case issuedMillis < nowMillis-w.WindowMillis, issuedMillis < horizon:
		return RequestRecord{}, RequestTooOld, nil
	}
	return RequestRecord{}, RequestNew, nil
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
	newest, err := newestRequest(s.Requests)
	if err != nil {
		return true
	}
	return nowMillis <= newest+w.WindowMillis+w.SkewMillis
}

// newestRequest is RequestTable.Newest of an encoded table, read without
// decoding it.
func newestRequest(b []byte) (int64, error) {
	sc, err := newRequestScanner(b)
	if err != nil {
		return 0, err
	}
	n := sc.horizon
	for {
		raw, ok := sc.next()
		if !ok {
			break
		}
		n = max(n, raw.issued)
	}
	return n, sc.done()
}

// requestIndex describes one encoded table, State.Requests, so that a
// write with a request ID can look its ID up and splice its record in
// without parsing the table: what makes a hot key's writes with IDs cost
// about what writes without them cost. The encoding stays the only truth
// (it is what is stored and sent); the index is a derived, in-memory view,
// a third of the table's size.
//
// An index is immutable once made: splicing makes a new one for the new
// encoding, so a state that carries one may be shared, across goroutines
// too. It is valid only for the very slice it was made from (enc: the same
// array and length), which State.Requests never changes in place; a state
// whose Requests was replaced without it simply has none.
type requestIndex struct {
	enc     []byte
	horizon int64
	at      []int32  // record i's first byte in enc; it ends where i+1 begins, or at the end
	issued  []int64  // record i's IssuedMillis
	hashes  []uint32 // idHash of every record's ID, sorted
}

// idHash is FNV-1a of an ID, folded to 32 bits. The index only ever
// concludes from a hash it does not hold (that ID is not in the table);
// a hash it holds sends the lookup to the encoding.
func idHash[T string | []byte](id T) uint32 {
	h := fnv1a(id)
	return uint32(h ^ h>>32)
}

// end is where record i ends in x.enc.
func (x *requestIndex) end(i int) int32 {
	if i+1 < len(x.at) {
		return x.at[i+1]
	}
	return int32(len(x.enc))
}

// indexOf returns s's index if it describes s.Requests, else nil.
func indexOf(s State) *requestIndex {
	x := s.index
	if x == nil || len(x.enc) != len(s.Requests) || len(x.enc) == 0 || &x.enc[0] != &s.Requests[0] {
		return nil
	}
	return x
}

// indexRequests makes the index of a non-empty encoded table.
func indexRequests(b []byte) (*requestIndex, error) {
	sc, err := newRequestScanner(b)
	if err != nil {
		return nil, err
	}
	x := &requestIndex{enc: b, horizon: sc.horizon, at: make([]int32, 0, sc.n+1), issued: make([]int64, 0, sc.n+1), hashes: make([]uint32, 0, sc.n+1)}
	for {
		raw, ok := sc.next()
		if !ok {
			break
		}
		x.at = append(x.at, int32(raw.at))
		x.issued = append(x.issued, raw.issued)
		x.hashes = append(x.hashes, idHash(b[raw.idAt:raw.idAt+raw.idLen]))
	}
	if err := sc.done(); err != nil {
		return nil, err
	}
	slices.Sort(x.hashes)
	return x, nil
}

// findRequest is FindRequest on s's table, through its index when it has
// one: an ID whose hash the index does not hold is not in the table; one
// whose hash it holds (a repeat, or a collision) is looked up in the
// encoding.
func findRequest(s State, id string) (RequestRecord, bool, int64, error) {
	if x := indexOf(s); x != nil {
		if _, held := slices.BinarySearch(x.hashes, idHash(id)); !held {
			return RequestRecord{}, false, x.horizon, nil
		}
	}
	return FindRequest(s.Requests, id)
}

// spliceIndexed is spliceRequests through x, the index of the table: it
// returns the new encoding and its index. No record is parsed: the
// survivors are known from x, and copied as they lie, in runs.
func spliceIndexed(x *requestIndex, cutoff int64, r RequestRecord) ([]byte, *requestIndex) {
	pruneBelow := max(x.horizon, cutoff)
	horizon := pruneBelow
	// The survivors of the prune, and the one With evicts when they fill
	// the table: the first issued, the earliest recorded among equals.
	survivors, evict := 0, -1
	var oldest int64
	for i, issued := range x.issued {
		if issued < pruneBelow {
			continue
		}
		if survivors == 0 || issued < oldest {
			oldest, evict = issued, i
		}
		survivors++
	}
	if survivors == MaxRequestRecords {
		horizon = max(horizon, oldest+1)
		survivors--
	} else {
		evict = -1
	}
	out := make([]byte, 0, len(x.enc)+24+len(r.ID)+len(r.Value))
	out = append(out, requestsFormat)
	out = binary.AppendVarint(out, horizon)
	out = binary.AppendUvarint(out, uint64(survivors+1))
	next := &requestIndex{horizon: horizon, at: make([]int32, 0, survivors+1), issued: make([]int64, 0, survivors+1)}
	// Runs of survivors are copied whole (on a full table, usually all
	// but the first record: one copy), their offsets shifted.
	var gone []uint32 // the hashes of the records removed
	run := 0          // the first record of the current run
	flush := func(end int) {
		if run == end {
			return
		}
		shift := int32(len(out)) - x.at[run]
		out = append(out, x.enc[x.at[run]:x.end(end-1)]...)
		moved := len(next.at)
		next.at = append(next.at, x.at[run:end]...)
		for j := moved; j < len(next.at); j++ {
			next.at[j] += shift
		}
		next.issued = append(next.issued, x.issued[run:end]...)
	}
	for i, issued := range x.issued {
		if issued >= pruneBelow && i != evict {
			continue
		}
		flush(i)
		run = i + 1
		gone = append(gone, idHash(recordID(x.enc, x.at[i])))
	}
	flush(len(x.issued))
	next.at = append(next.at, int32(len(out)))
	next.issued = append(next.issued, r.IssuedMillis)
	out = appendRequest(out, r)
	next.enc = out
	next.hashes = mergeHashes(x.hashes, gone, idHash(r.ID))
	return out, next
}

// mergeHashes returns sorted hashes less one of each of gone (which it
// holds) and plus add, in one pass.
func mergeHashes(hashes, gone []uint32, add uint32) []uint32 {
	slices.Sort(gone)
	out := make([]uint32, 0, len(hashes)+1)
	added := false
	for _, h := range hashes {
		if len(gone) > 0 && h == gone[0] {
			gone = gone[1:]
			continue
		}
		if !added && add <= h {
			out, added = append(out, add), true
		}
		out = append(out, h)
	}
	if !added {
		out = append(out, add)
	}
	return out
}

// recordID is the ID of the record at at in enc, a table an index was
// made from.
func recordID(enc []byte, at int32) []byte {
	l, p := uvarintAt(enc, int(at))
	return enc[p : p+int(l)]
}

// spliceState returns cur's table with the records of requests issued
// before cutoff removed and r added (Write.PruneBelow, Write.Record), and
// its index: through cur's index, made first if cur has none.
func spliceState(cur State, cutoff int64, r RequestRecord) ([]byte, *requestIndex, error) {
	if len(cur.Requests) == 0 {
		b, err := spliceRequests(nil, cutoff, r)
		if err != nil {
			return nil, nil, err
		}
		x, err := indexRequests(b)
		return b, x, err
	}
	x := indexOf(cur)
	if x == nil {
		var err error
		if x, err = indexRequests(cur.Requests); err != nil {
			return nil, nil, err
		}
	}
	b, next := spliceIndexed(x, cutoff, r)
	return b, next, nil
}
