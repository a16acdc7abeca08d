package consulapi

import (
	"errors"
	"net/url"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
)

// FuzzParseKVQuery: any query string is parsed or refused as a bad
// request, never a panic; what is parsed keeps its rules.
func FuzzParseKVQuery(f *testing.F) {
	for _, s := range []string{"", "recurse", "keys&separator=/", "index=5&wait=10s", "cas=0&flags=42", "acquire=x",
		"acquire=x&release=y", "cas=1&recurse", "wait=-1s", "index=18446744073709551616", "ns=default", "ns=x", "raw&token=t&dc=dc9"} {
		for _, m := range []string{"GET", "PUT", "DELETE", "POST", "PATCH"} {
			f.Add(m, s)
		}
	}
	f.Fuzz(func(t *testing.T, method, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseKVQuery(method, v)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("%s %q: error %v is not a bad request", method, raw, err)
			}
			return
		}
		if q.wait <= 0 || q.wait > kv.MaxWatchWait {
			t.Fatalf("%q: wait %v out of bounds", raw, q.wait)
		}
		if q.acquire != "" && (q.release != "" || q.hasCAS) {
			t.Fatalf("%q: acquire with release or cas accepted", raw)
		}
		if !q.hasCAS && q.cas != 0 {
			t.Fatalf("%q: a cas without ?cas", raw)
		}
	})
}

// FuzzParseTxn: any body is parsed, refused as a bad request or a limit,
// or refused as a transaction caspaxos does not run; a parsed one touches
// one valid key with known verbs.
func FuzzParseTxn(f *testing.F) {
	for _, s := range []string{
		`[{"KV":{"Verb":"set","Key":"k","Value":"dg=="}}]`,
		`[{"KV":{"Verb":"check-index","Key":"k","Index":3}},{"KV":{"Verb":"delete","Key":"k"}}]`,
		`[{"KV":{"Verb":"set","Key":"k"}},{"KV":{"Verb":"set","Key":"j"}}]`,
		`[{"KV":{"Verb":"lock","Key":"k","Session":"s"}}]`,
		`[{"Node":{}}]`, `[]`, `{}`, `[{"KV":{"Verb":"get","Key":""}}]`, `[{"KV":{"Verb":"get","Key":"\u0000x"}}]`,
		`[{"KV":{"Verb":"get","Key":"k","Bogus":1}}]`, `[{"KV":{"Verb":"set","Key":"k","Value":"!!"}}]`,
	} {
		f.Add([]byte(s))
	}
	l := kv.Limits{MaxKeyBytes: 16, MaxValueBytes: 64}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := parseTxn(body, l)
		var refusal *txnRefusal
		switch {
		case errors.As(err, &refusal):
			return
		case err != nil:
			if code, _ := kv.Code(err); !errors.Is(err, errBadRequest) && code == kv.CodeInternal {
				t.Fatalf("%q: error %v is neither a bad request nor a limit", body, err)
			}
			return
		}
		if len(ops) == 0 || len(ops) > maxTxnOps {
			t.Fatalf("%q: %d operations accepted", body, len(ops))
		}
		for _, op := range ops {
			if _, ok := txnVerbs[op.Verb]; !ok || op.Key != ops[0].Key || l.CheckKey(op.Key) != nil || kv.CheckClientKey(op.Key) != nil {
				t.Fatalf("%q: accepted %+v", body, op)
			}
		}
		runTxn(ops, protocol.State{Value: []byte("v"), Version: 3, Created: 2})
	})
}

// FuzzParseSessionRequest: any create body is taken or refused as a bad
// request; a session taken has a TTL and a lock delay within Consul's
// bounds and a known behaviour.
func FuzzParseSessionRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"TTL":"15s"}`, `{"TTL":"10s","LockDelay":"15000ms","Behavior":"delete","Checks":["serfHealth"]}`,
		`{"TTL":"15s","LockDelay":30}`, `{"TTL":"15s","LockDelay":15000000000}`, `{"TTL":"15s","LockDelay":true}`,
		`{"TTL":"25h"}`, `{"TTL":"15s","ServiceChecks":[{"ID":"x"}]}`, `{"TTL":"15s","Namespace":"x"}`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, ttl, err := parseSessionRequest(body)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("%q: error %v is not a bad request", body, err)
			}
			return
		}
		if ttl < MinSessionTTL || ttl > MaxSessionTTL || s.LockDelay < 0 || s.LockDelay > kv.MaxLockDelay ||
			(s.Behavior != "release" && s.Behavior != "delete") {
			t.Fatalf("%q: took %+v ttl %v", body, s, ttl)
		}
		if err := kv.CheckLeaseTTL(ttl); err != nil {
			t.Fatalf("%q: a TTL the lease refuses: %v", body, err)
		}
	})
}

// FuzzParseSessionID: a session ID read back is the one written.
func FuzzParseSessionID(f *testing.F) {
	f.Add("00000000-0000-0000-0001-000000000002")
	f.Add("adf4238a-882b-9ddc-4a9d-5b6758e4159e")
	f.Add("00000000-0000-0000-+fff-00000000000f")
	f.Add("00000000-0000-0000-000A-000000000001")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseSessionID(s)
		if err != nil {
			return
		}
		if id == 0 || sessionID(id) != s {
			t.Fatalf("%q read as %x, written back as %q", s, id, sessionID(id))
		}
	})
}
