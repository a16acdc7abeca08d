package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// Restore (`caspaxos snapshot restore`, internal/snapshot): POST
// /v1/restore writes a batch of keys, each at a version of at least
// min_version (kv.OpRestore), so that restored data sits above every
// version the snapshot's cluster gave out. Admin only: it overwrites
// whatever the keys hold, and the caller chooses versions.

// RestoreRequest is the body of POST /v1/restore (application/json).
type RestoreRequest struct {
	// MinVersion is the least version each key is written at (>= 1).
	MinVersion uint64        `json:"min_version"`
	Items      []RestoreItem `json:"items"`
}

// RestoreItem is one key to restore; Key and Value travel as base64.
type RestoreItem struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

// RestoreResponse answers a RestoreRequest whose every item was written:
// the version each was written at, in the request's order.
type RestoreResponse struct {
	Versions []uint64 `json:"versions"`
}

const (
	// MaxRestoreItems bounds the keys of one restore request.
	MaxRestoreItems = 1000
	// restoreParallel bounds the keys of one request written at once.
	restoreParallel = 16
)

// maxRestoreBody is the most a restore body may hold under limits l: the
// largest key and value, base64, with room for many small keys.
func maxRestoreBody(l kv.Limits) int64 {
	return 2*int64(l.MaxKeyBytes+l.MaxValueBytes) + 8<<20
}

// restore answers POST /v1/restore; adminOnly has checked the caller.
func (h *httpAPI) restore(w http.ResponseWriter, r *http.Request) {
	req, err := h.restoreRequest(w, r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	versions, err := h.restoreItems(r.Context(), req)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, RestoreResponse{Versions: versions})
}

func (h *httpAPI) restoreRequest(w http.ResponseWriter, r *http.Request) (RestoreRequest, error) {
	var req RestoreRequest
	if err := onlyQuery(r); err != nil {
		return req, err
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRestoreBody(h.cfg.Limits)))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil {
		// One object and nothing after it (found by FuzzRestoreRequest).
		if rest := dec.Decode(&struct{}{}); !errors.Is(rest, io.EOF) {
			err = fmt.Errorf("data after the JSON object")
		}
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, fmt.Errorf("%w: the restore body is over %d bytes", kv.ErrValueTooLarge, tooLarge.Limit)
		}
		return req, fmt.Errorf("%w: the restore body: %v", errBadRequest, err)
	}
	switch {
	case req.MinVersion == 0 || req.MinVersion > protocol.MaxVersion:
		return req, fmt.Errorf("%w: min_version must be from 1 to %d", errBadRequest, protocol.MaxVersion)
	case len(req.Items) > MaxRestoreItems:
		return req, fmt.Errorf("%w: %d items, at most %d per request", errBadRequest, len(req.Items), MaxRestoreItems)
	}
	for _, it := range req.Items {
		if err := checkClientOp(kv.Op{Kind: kv.OpRestore, Key: string(it.Key), Value: it.Value, Version: req.MinVersion}, h.cfg.Limits); err != nil {
			return req, err
		}
	}
	return req, nil
}

// restoreItems writes every item, restoreParallel at a time, each within
// the request timeout of a single operation; the first error ends the
// request (items already written stay written: a restore
// is rerun whole, and writing a key again only raises its version).
func (h *httpAPI) restoreItems(ctx context.Context, req RestoreRequest) ([]uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	versions := make([]uint64, len(req.Items))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, restoreParallel)
	for i, it := range req.Items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ictx, icancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
			s, err := h.b.Do(ictx, kv.Op{Kind: kv.OpRestore, Key: string(it.Key), Value: it.Value, Version: req.MinVersion})
			icancel()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("restoring key %q: %w", it.Key, err)
					cancel()
				}
				mu.Unlock()
				return
			}
			versions[i] = s.Version
		}()
	}
	wg.Wait()
	return versions, first
}
