package consulapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Transactions (/v1/txn) on one key.
//
// Consul commits a transaction's operations at one index of its log,
// whatever keys they touch. caspaxos commits per key, so a transaction is
// served when all its operations touch one key: it reads the key, runs
// the operations in order on what it read (checks, gets and writes, as
// Consul does), and commits the net write as one check-and-set on the
// version read, retried from the read on a conflict (Config.MaxTxnAttempts).
// A version names one state of a register for ever, so the write applies
// to exactly the state the checks saw. A transaction on more than one key
// is refused as a whole (409, Consul's error shape), nothing applied.

// maxTxnOps bounds a transaction's operations (Consul's limit).
const maxTxnOps = 64

// txnOpJSON is one operation of a /v1/txn body: only KV operations are
// served.
type txnOpJSON struct {
	KV      *txnKV
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
	Session json.RawMessage
}

// txnKV is a KV operation (api.KVTxnOp).
type txnKV struct {
	Verb      string
	Key       string
	Value     []byte
	Flags     uint64
	Index     uint64
	Session   string
	Namespace string
	Partition string
}

// txnError is one entry of a refused transaction's Errors (api.TxnError).
type txnError struct {
	OpIndex int
	What    string
}

// txnResult is one entry of a transaction's Results (api.TxnResult).
type txnResult struct {
	KV *kvPair
}

// txnResponse is a transaction's answer (api.TxnResponse).
type txnResponse struct {
	Results []txnResult
	Errors  []txnError
}

// txnVerbs are the KV verbs served, and whether each writes.
var txnVerbs = map[string]bool{
	"set": true, "cas": true, "delete": true, "delete-cas": true,
	"get": false, "get-or-empty": false, "check-index": false, "check-not-exists": false,
}

// txnRefusal is a transaction refused before it ran: the op and why.
type txnRefusal struct {
	op  int
	why string
}

func (e *txnRefusal) Error() string { return fmt.Sprintf("operation %d: %s", e.op, e.why) }

// parseTxn decodes a /v1/txn body and checks that its operations are KV
// operations caspaxos serves, all on one key. A malformed body is
// errBadRequest; a well-formed one caspaxos cannot run is a *txnRefusal.
func parseTxn(body []byte, l kv.Limits) ([]txnKV, error) {
	var ops []txnOpJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ops); err != nil {
		return nil, fmt.Errorf("%w: Failed to parse body: %v", errBadRequest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: Failed to parse body: data after the operations", errBadRequest)
	}
	switch {
	case len(ops) == 0:
		return nil, fmt.Errorf("%w: a transaction needs at least one operation", errBadRequest)
	case len(ops) > maxTxnOps:
		return nil, fmt.Errorf("%w: Transaction contains too many operations (%d > %d)", errBadRequest, len(ops), maxTxnOps)
	}
	out := make([]txnKV, len(ops))
	for i, op := range ops {
		if op.KV == nil {
			return nil, &txnRefusal{i, "caspaxos serves KV operations only in a transaction (no Node, Service, Check or Session operations)"}
		}
		k := *op.KV
		writes, ok := txnVerbs[k.Verb]
		switch {
		case k.Verb == "lock" || k.Verb == "unlock" || k.Verb == "check-session":
			return nil, &txnRefusal{i, fmt.Sprintf("verb %q: sessions are not served in transactions by caspaxos's Consul API; use PUT /v1/kv/{key}?acquire= or ?release=", k.Verb)}
		case k.Verb == "get-tree" || k.Verb == "delete-tree":
			return nil, &txnRefusal{i, fmt.Sprintf("verb %q touches many keys: caspaxos commits a transaction on one key only; list with GET ?recurse, delete with DELETE ?recurse", k.Verb)}
		case !ok:
			return nil, fmt.Errorf("%w: operation %d: unknown KV verb %q", errBadRequest, i, k.Verb)
		case (k.Namespace != "" && k.Namespace != "default") || (k.Partition != "" && k.Partition != "default"):
			return nil, &txnRefusal{i, "caspaxos has only the default namespace and partition"}
		case k.Key != out[0].Key && i > 0:
			return nil, &txnRefusal{i, fmt.Sprintf("key %q differs from operation 0's %q: caspaxos commits a transaction on one key only (each key is its own register, there is no log to commit many keys at one index)", k.Key, out[0].Key)}
		}
		if err := l.CheckKey(k.Key); err != nil {
			return nil, fmt.Errorf("operation %d: %w", i, err)
		}
		if err := kv.CheckClientKey(k.Key); err != nil {
			return nil, fmt.Errorf("operation %d: %w", i, err)
		}
		if writes {
			if err := l.CheckValue(k.Value); err != nil {
				return nil, fmt.Errorf("operation %d: %w", i, err)
			}
		}
		out[i] = k
	}
	return out, nil
}

// txnRun is one run of a transaction's operations on a state read.
type txnRun struct {
	cur      protocol.State // the key as the operations so far left it
	wrote    bool
	results  []txnResult
	written  []bool // results[i] shows a state this transaction wrote
	failures []txnError
}

// runTxn runs ops on st, the key's state read, as Consul does in order:
// a check that fails is recorded and the rest still checked, so that the
// answer lists every failure; writes change cur.
func runTxn(ops []txnKV, st protocol.State) *txnRun {
	t := &txnRun{cur: st}
	fail := func(i int, format string, args ...any) {
		t.failures = append(t.failures, txnError{OpIndex: i, What: fmt.Sprintf(format, args...)})
	}
	index := func() uint64 { return kv.CurrentVersion(t.cur) }
	result := func(withValue bool) {
		p := pairOf(ops[0].Key, t.cur)
		if !withValue {
			p.Value = nil
		}
		t.results = append(t.results, txnResult{KV: &p})
		t.written = append(t.written, t.wrote)
	}
	set := func(op txnKV) {
		next := protocol.State{Value: op.Value, Version: t.cur.Version, Created: t.cur.Created, Attrs: t.cur.Attrs}
		if !t.cur.Exists() {
			next.Created, next.Attrs = 0, protocol.Attrs{}
		}
		next.Flags = op.Flags
		t.cur, t.wrote = next, true
		result(false)
	}
	for i, op := range ops {
		switch op.Verb {
		case "set":
			set(op)
		case "cas":
			if index() != op.Index {
				fail(i, "failed to set key %q, index is stale (current modify index %d != %d)", op.Key, index(), op.Index)
				continue
			}
			set(op)
		case "delete":
			t.cur, t.wrote = protocol.State{Version: t.cur.Version, Deleted: true}, true
		case "delete-cas":
			if t.cur.Exists() && index() != op.Index {
				fail(i, "failed to delete key %q, index is stale (current modify index %d != %d)", op.Key, index(), op.Index)
				continue
			}
			t.cur, t.wrote = protocol.State{Version: t.cur.Version, Deleted: true}, true
		case "get":
			if !t.cur.Exists() {
				fail(i, "key %q doesn't exist", op.Key)
				continue
			}
			result(true)
		case "get-or-empty":
			if t.cur.Exists() {
				result(true)
			}
		case "check-index":
			if !t.cur.Exists() || index() != op.Index {
				fail(i, "current modify index %d != %d", index(), op.Index)
				continue
			}
			result(false)
		case "check-not-exists":
			if t.cur.Exists() {
				fail(i, "key %q exists", op.Key)
			}
		}
	}
	return t
}

// txn serves PUT /v1/txn.
func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r.URL.Query(), []string{"consistent", "stale"}); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.begin(r)
	if err != nil {
		writeError(w, err)
		return
	}
	limit := int64(2*s.cfg.Limits.MaxValueBytes + 1<<16)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	switch {
	case err != nil:
		writeError(w, fmt.Errorf("%w: reading the body: %v", errBadRequest, err))
		return
	case int64(len(body)) > limit:
		writeError(w, fmt.Errorf("%w: a transaction's body is over %d bytes", kv.ErrValueTooLarge, limit))
		return
	}
	ops, err := parseTxn(body, s.cfg.Limits)
	var refusal *txnRefusal
	if errors.As(err, &refusal) {
		setIndex(w, 0)
		writeJSON(w, http.StatusConflict, txnResponse{Errors: []txnError{{OpIndex: refusal.op, What: "caspaxos: " + refusal.why}}})
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	run, after, err := c.commitTxn(ops)
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, keyIndex(after))
	if len(run.failures) > 0 {
		writeJSON(w, http.StatusConflict, txnResponse{Errors: run.failures})
		return
	}
	for i, res := range run.results {
		if run.written[i] {
			// The index the commit gave the key.
			res.KV.ModifyIndex = after.Version
			res.KV.CreateIndex = pairOf(res.KV.Key, after).CreateIndex
		}
	}
	if err := c.hideEnded(run.results); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, txnResponse{Results: run.results})
}

// hideEnded shows the results' key free (no Session) where its holder's
// lease has ended, as a GET does (holding.view); a transaction does not
// settle the key.
func (c *call) hideEnded(results []txnResult) error {
	live := map[string]bool{}
	for _, res := range results {
		s := res.KV.Session
		if s == "" {
			continue
		}
		ok, seen := live[s]
		if !seen {
			id, err := parseSessionID(s)
			if err != nil {
				return err
			}
			if ok, _, err = c.leaseLive(id); err != nil {
				return err
			}
			live[s] = ok
		}
		if !ok {
			res.KV.Session = ""
		}
	}
	return nil
}

// commitTxn reads the key, runs ops on it and commits their net write on
// the version read, from the read again on a conflict. It returns the
// run and the key's state after.
func (c *call) commitTxn(ops []txnKV) (*txnRun, protocol.State, error) {
	key := ops[0].Key
	perm := auth.PermRead
	for _, op := range ops {
		if txnVerbs[op.Verb] {
			perm = auth.PermReadWrite
		}
	}
	if err := c.allowed(auth.Access{Perm: perm, Key: key}); err != nil {
		return nil, protocol.State{}, err
	}
	for range c.s.cfg.MaxTxnAttempts {
		before, err := c.do(kv.Op{Kind: kv.OpGet, Key: key})
		if err != nil {
			return nil, before, err
		}
		run := runTxn(ops, before)
		if len(run.failures) > 0 || !run.wrote {
			return run, before, nil
		}
		var op kv.Op
		switch {
		case run.cur.Exists():
			op = kv.Op{Kind: kv.OpCompareAndSwapFlags, Key: key, Version: kv.CurrentVersion(before), Value: run.cur.Value, Flags: run.cur.Flags}
		case before.Exists():
			op = kv.Op{Kind: kv.OpDelete, Key: key, Version: before.Version}
		default:
			return run, before, nil // deleted what did not exist
		}
		after, err := c.do(op)
		if errors.Is(err, kv.ErrVersionMismatch) || errors.Is(err, kv.ErrNotFound) {
			continue // changed since the read: run again on the new state
		}
		return run, after, err
	}
	return nil, protocol.State{}, fmt.Errorf("%w: key %q changed under %d attempts in a row; nothing was applied, retry", errContended, key, c.s.cfg.MaxTxnAttempts)
}
