package clientapi

import (
	"context"
	"net/http"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Exactly-once writes over the client API (COORDINATION.md, "Exactly-once
// writes"; kv/request.go).
//
// A write (HTTP PUT, DELETE, POST; gRPC Put, Delete, Increment) may carry
// a request ID: the Idempotency-Key header, or the request_id field. It
// must be a UUID of version 7 (RFC 9562) made when the write was first
// issued, and reused, unchanged, by every retry of it. The key's register
// keeps the IDs of the writes that changed it for the idempotency window
// (--idempotency-window): a repeated ID is answered with the write's first
// outcome and changes nothing; a retry issued longer ago than the window
// is refused (request_expired), never applied a second time. A write that
// was refused (a failed compare-and-swap) is not recorded: its retry runs
// afresh.
//
// The outcome query, GET /v1/kv/{key}?request_id=ID (gRPC Outcome), tells
// whether the write of ID was applied, definitively: it runs as a change
// of the register (its prepare fences every attempt still in flight),
// never as a fast read, and an ID it does not find is recorded as not
// applied, so no late attempt can apply it after the answer (such an
// attempt is refused: request_not_applied). It answers
//
//	{"request_id": ID, "applied": true, "version": V}
//	{"request_id": ID, "applied": false}
//
// or request_expired when the ID is too old to tell.

// IdempotencyKeyHeader carries a write's request ID over HTTP (the name of
// the IETF httpapi draft).
const IdempotencyKeyHeader = "Idempotency-Key"

// OutcomeAnswer is the outcome query's answer.
type OutcomeAnswer struct {
	RequestID string `json:"request_id"`
	Applied   bool   `json:"applied"`
	Version   uint64 `json:"version,omitempty"`
}

// outcomeOf reads the answer to an outcome query from the state it left.
func outcomeOf(s protocol.State, id string) (OutcomeAnswer, error) {
	rec, ok := kv.RequestOutcome(s, id)
	if !ok {
		// The query's change records every ID it does not find, so its
		// state holds it: this is a bug, not an answer.
		return OutcomeAnswer{}, errOutcomeLost
	}
	return OutcomeAnswer{RequestID: id, Applied: rec.Outcome == protocol.RequestApplied, Version: rec.Version}, nil
}

func (h *httpAPI) outcome(w http.ResponseWriter, r *http.Request) {
	if err := onlyQuery(r, "request_id"); err != nil {
		writeError(w, err, 0)
		return
	}
	id := r.URL.Query().Get("request_id")
	s, err := h.run(r, kv.Op{Kind: kv.OpOutcome, Key: r.PathValue("key"), RequestID: id})
	var a OutcomeAnswer
	if err == nil {
		a, err = outcomeOf(s, id)
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// Outcome is the gRPC outcome query.
func (g *grpcAPI) Outcome(ctx context.Context, r *caspaxospb.OutcomeRequest) (*caspaxospb.OutcomeResponse, error) {
	s, err := g.run(ctx, kv.Op{Kind: kv.OpOutcome, Key: string(r.GetKey()), RequestID: r.GetRequestId()})
	if err != nil {
		return nil, err
	}
	a, err := outcomeOf(s, r.GetRequestId())
	if err != nil {
		return nil, statusOf(err)
	}
	return &caspaxospb.OutcomeResponse{Applied: a.Applied, Version: a.Version}, nil
}
