package etcdapi

import (
	"bytes"
	"context"
	"fmt"

	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
)

// errMultiKey: a Txn touches more than one key.
var errMultiKey = fmt.Errorf("%w: caspaxos runs a Txn atomically only when its compares and operations all touch one key (each key is its own register; there is no transaction across registers)", errBadRequest)

// txnPlan is a checked single-key Txn.
type txnPlan struct {
	key            string
	reads, writes  bool // some op reads the key / writes it
	compares       []*etcdpb.Compare
	success, fails []*etcdpb.RequestOp
}

// checkTxn finds the one key r touches and refuses anything else.
func checkTxn(r *etcdpb.TxnRequest) (txnPlan, error) {
	p := txnPlan{compares: r.GetCompare(), success: r.GetSuccess(), fails: r.GetFailure()}
	var keys [][]byte
	for _, cmp := range p.compares {
		if len(cmp.GetRangeEnd()) != 0 {
			return p, fmt.Errorf("%w: a compare over the range [%q, %q)", errMultiKey, cmp.GetKey(), cmp.GetRangeEnd())
		}
		keys = append(keys, cmp.GetKey())
	}
	if len(p.compares) > 0 {
		p.reads = true
	}
	for _, branch := range [][]*etcdpb.RequestOp{p.success, p.fails} {
		wrote := false
		for _, op := range branch {
			key, w, err := checkOp(op)
			if err != nil {
				return p, err
			}
			if w && wrote {
				return p, fmt.Errorf("%w: etcdserver: duplicate key given in txn request (%q is written twice in one branch)", errBadRequest, key)
			}
			wrote = wrote || w
			p.writes, p.reads = p.writes || w, p.reads || !w
			keys = append(keys, key)
		}
	}
	for _, k := range keys {
		if len(k) == 0 {
			return p, fmt.Errorf("%w: a compare or operation of the Txn has an empty key", errBadRequest)
		}
		if !bytes.Equal(k, keys[0]) {
			return p, fmt.Errorf("%w: it touches %q and %q", errMultiKey, keys[0], k)
		}
	}
	if len(keys) > 0 {
		p.key = string(keys[0])
	}
	return p, nil
}

// checkOp returns the one key op touches and whether it writes it.
func checkOp(op *etcdpb.RequestOp) (key []byte, writes bool, err error) {
	switch o := op.GetRequest().(type) {
	case *etcdpb.RequestOp_RequestRange:
		if createRanking(o.RequestRange) {
			return nil, false, errCreateRanking
		}
		if len(o.RequestRange.GetRangeEnd()) != 0 {
			return nil, false, fmt.Errorf("%w: a Range over [%q, %q) inside it", errMultiKey, o.RequestRange.GetKey(), o.RequestRange.GetRangeEnd())
		}
		return o.RequestRange.GetKey(), false, checkRange(o.RequestRange)
	case *etcdpb.RequestOp_RequestPut:
		if o.RequestPut.GetIgnoreValue() && len(o.RequestPut.GetValue()) != 0 {
			return nil, false, fmt.Errorf("%w: ignore_value with a value", errBadRequest)
		}
		return o.RequestPut.GetKey(), true, checkLease(o.RequestPut.GetLease())
	case *etcdpb.RequestOp_RequestDeleteRange:
		if len(o.RequestDeleteRange.GetRangeEnd()) != 0 {
			return nil, false, fmt.Errorf("%w: a DeleteRange over [%q, %q) inside it", errMultiKey, o.RequestDeleteRange.GetKey(), o.RequestDeleteRange.GetRangeEnd())
		}
		return o.RequestDeleteRange.GetKey(), true, nil
	case *etcdpb.RequestOp_RequestTxn:
		return nil, false, fmt.Errorf("%w: a Txn nested in a Txn is not supported; flatten it into one Txn on one key", errBadRequest)
	default:
		return nil, false, fmt.Errorf("%w: an empty operation in a Txn", errBadRequest)
	}
}

// compareOutcome evaluates one compare on the key's state.
func compareOutcome(cmp *etcdpb.Compare, st protocol.State) (bool, error) {
	res := cmp.GetResult()
	switch cmp.GetTarget() {
	case etcdpb.Compare_VALUE:
		if !st.Exists() {
			return false, nil // as etcd: a value compare on a missing key fails
		}
		return holds(res, bytes.Compare(st.Value, cmp.GetValue())), nil
	case etcdpb.Compare_MOD:
		return holds(res, compareInt(int64(modRevision(st)), cmp.GetModRevision())), nil
	case etcdpb.Compare_LEASE:
		return holds(res, compareInt(int64(st.Lease), cmp.GetLease())), nil
	case etcdpb.Compare_VERSION:
		v, known := etcdVersion(st)
		return compareLife(cmp, "version", cmp.GetVersion(), v, known, st)
	case etcdpb.Compare_CREATE:
		c, known := createRevision(st)
		return compareLife(cmp, "create_revision", cmp.GetCreateRevision(), c, known, st)
	default:
		return false, fmt.Errorf("%w: unknown compare target %d", errBadRequest, cmp.GetTarget())
	}
}

// compareLife compares a field that depends on when the key's life began
// (version, create_revision): got, when known. A live key written before
// that was kept (protocol.State.Created) has it only within [1,
// mod_revision]: the compare is answered when every value there gives the
// same outcome, and refused otherwise rather than answered wrongly.
func compareLife(cmp *etcdpb.Compare, name string, want int64, got uint64, known bool, st protocol.State) (bool, error) {
	res := cmp.GetResult()
	if known {
		return holds(res, compareInt(int64(got), want)), nil
	}
	// The signs of x - want for x in [1, mod_revision].
	var signs []int
	if want > 1 {
		signs = append(signs, -1)
	}
	if want >= 1 && want <= int64(st.Version) {
		signs = append(signs, 0)
	}
	if want < int64(st.Version) {
		signs = append(signs, 1)
	}
	first := holds(res, signs[0])
	for _, sg := range signs[1:] {
		if holds(res, sg) != first {
			return false, fmt.Errorf("%w: a compare of %s with %d on key %q (mod_revision %d): the key was last created before caspaxos kept the first version of a key's life, so its %s is known only to lie between 1 and mod_revision; compare mod_revision instead, or re-create the key",
				errUnknowable, name, want, cmp.GetKey(), st.Version, name)
		}
	}
	return first, nil
}

// modRevision is st's etcd mod_revision: its version while it lives, 0 when absent.
func modRevision(st protocol.State) uint64 {
	if st.Exists() {
		return st.Version
	}
	return 0
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// holds says whether a comparison whose three-way outcome is c satisfies res.
func holds(res etcdpb.Compare_CompareResult, c int) bool {
	switch res {
	case etcdpb.Compare_EQUAL:
		return c == 0
	case etcdpb.Compare_NOT_EQUAL:
		return c != 0
	case etcdpb.Compare_GREATER:
		return c > 0
	case etcdpb.Compare_LESS:
		return c < 0
	}
	return false
}

// Txn serves KV.Txn.
func (s *Server) Txn(ctx context.Context, r *etcdpb.TxnRequest) (*etcdpb.TxnResponse, error) {
	c, done, err := s.begin(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	defer done()
	resp, err := c.txn(r)
	if err != nil {
		return nil, statusOf(err)
	}
	return resp, nil
}

func (c *call) txn(r *etcdpb.TxnRequest) (*etcdpb.TxnResponse, error) {
	p, err := checkTxn(r)
	if err != nil {
		return nil, err
	}
	if p.key == "" {
		return &etcdpb.TxnResponse{Header: c.s.header(0), Succeeded: true}, nil
	}
	if err := c.checkKey(p.key); err != nil {
		return nil, err
	}
	// Permissions for both branches, as etcd checks them, before anything runs.
	if p.reads {
		if err := c.allowed(auth.Access{Perm: auth.PermRead, Key: p.key}); err != nil {
			return nil, err
		}
	}
	if p.writes {
		if err := c.allowed(auth.Access{Perm: auth.PermWrite, Key: p.key}); err != nil {
			return nil, err
		}
	}
	var succeeded bool
	before, after, err := c.update(p.key, func(st protocol.State) (write, error) {
		ok, err := evaluate(p.compares, st)
		if err != nil {
			return write{}, err
		}
		succeeded = ok
		return branchWrite(p.branch(ok), st)
	})
	if err != nil {
		return nil, err
	}
	resp := &etcdpb.TxnResponse{Header: c.s.header(after.Version), Succeeded: succeeded}
	resp.Responses = p.responses(c.s, p.branch(succeeded), before, after)
	return resp, nil
}

func (p txnPlan) branch(succeeded bool) []*etcdpb.RequestOp {
	if succeeded {
		return p.success
	}
	return p.fails
}

// evaluate is the conjunction of the compares on st.
func evaluate(cmps []*etcdpb.Compare, st protocol.State) (bool, error) {
	all := true
	for _, cmp := range cmps {
		ok, err := compareOutcome(cmp, st)
		if err != nil {
			return false, err
		}
		all = all && ok
	}
	return all, nil
}

// branchWrite is the one write of a branch (checkTxn allows one at most).
func branchWrite(ops []*etcdpb.RequestOp, st protocol.State) (write, error) {
	for _, op := range ops {
		switch o := op.GetRequest().(type) {
		case *etcdpb.RequestOp_RequestPut:
			return putPlan(o.RequestPut)(st)
		case *etcdpb.RequestOp_RequestDeleteRange:
			return write{kind: protocol.WriteDelete}, nil
		}
	}
	return write{kind: protocol.WriteKeep}, nil
}

// responses answers a branch's ops: those before its write see before,
// those after it see after.
func (p txnPlan) responses(s *Server, ops []*etcdpb.RequestOp, before, after protocol.State) []*etcdpb.ResponseOp {
	out := make([]*etcdpb.ResponseOp, 0, len(ops))
	seen := before
	for _, op := range ops {
		switch o := op.GetRequest().(type) {
		case *etcdpb.RequestOp_RequestRange:
			out = append(out, &etcdpb.ResponseOp{Response: &etcdpb.ResponseOp_ResponseRange{ResponseRange: rangeOf(s, p.key, o.RequestRange, seen)}})
		case *etcdpb.RequestOp_RequestPut:
			pr := &etcdpb.PutResponse{Header: s.header(after.Version)}
			if o.RequestPut.GetPrevKv() && before.Exists() {
				pr.PrevKv = keyValue(p.key, before, false)
			}
			out = append(out, &etcdpb.ResponseOp{Response: &etcdpb.ResponseOp_ResponsePut{ResponsePut: pr}})
			seen = after
		case *etcdpb.RequestOp_RequestDeleteRange:
			dr := &etcdpb.DeleteRangeResponse{Header: s.header(after.Version)}
			if before.Exists() {
				dr.Deleted = 1
				if o.RequestDeleteRange.GetPrevKv() {
					dr.PrevKvs = []*mvccpb.KeyValue{keyValue(p.key, before, false)}
				}
			}
			out = append(out, &etcdpb.ResponseOp{Response: &etcdpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}})
			seen = after
		}
	}
	return out
}

// rangeOf answers a single-key Range on the state st.
func rangeOf(s *Server, key string, r *etcdpb.RangeRequest, st protocol.State) *etcdpb.RangeResponse {
	resp := &etcdpb.RangeResponse{Header: s.header(st.Version)}
	if st.Exists() && matchesFilters(r, st) {
		resp.Count = 1
		if !r.GetCountOnly() {
			resp.Kvs = []*mvccpb.KeyValue{keyValue(key, st, r.GetKeysOnly())}
		}
	}
	return resp
}
