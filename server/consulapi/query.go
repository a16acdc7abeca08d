package consulapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/caspaxos/caspaxos/kv"
)

// kvQuery is a /v1/kv request's query parameters.
type kvQuery struct {
	// GET
	recurse, keys, raw bool
	separator          string
	// index > 0: a blocking query, waiting up to wait for the index to
	// change.
	index uint64
	wait  time.Duration
	// PUT and DELETE
	hasCAS bool
	cas    uint64
	// PUT
	flags            uint64
	acquire, release string
}

// kvParams are the parameters each method takes: the rest are refused,
// so that a parameter caspaxos would ignore never changes an answer
// silently. token (credentials), dc (one datacenter: ignored), ns and
// partition ("default" only) are taken by every method.
var kvParams = map[string][]string{
	"GET":    {"recurse", "keys", "raw", "separator", "index", "wait", "consistent", "stale", "cached"},
	"PUT":    {"cas", "flags", "acquire", "release"},
	"DELETE": {"cas", "recurse"},
}

// commonParams are taken by every request.
var commonParams = []string{"token", "dc", "ns", "partition"}

// checkParams refuses a parameter outside allowed and commonParams, and a
// namespace or partition other than the default (Consul Enterprise's).
func checkParams(q url.Values, allowed []string) error {
	for name, vs := range q {
		if !slices.Contains(allowed, name) && !slices.Contains(commonParams, name) {
			return fmt.Errorf("%w: query parameter %q is not served by caspaxos's Consul API (docs/consul.md)", errBadRequest, name)
		}
		if (name == "ns" || name == "partition") && len(vs) > 0 && vs[0] != "" && vs[0] != "default" {
			return fmt.Errorf("%w: %s=%q: caspaxos has only the default %s", errBadRequest, name, vs[0], name)
		}
	}
	return nil
}

// parseKVQuery reads the query of a /v1/kv request of method (PUT also
// for POST). A flag parameter (recurse, keys, raw, consistent, stale,
// cached) is set by its presence, whatever its value, as in Consul.
func parseKVQuery(method string, q url.Values) (kvQuery, error) {
	if method == "POST" {
		method = "PUT"
	}
	allowed, ok := kvParams[method]
	if !ok {
		return kvQuery{}, fmt.Errorf("%w: method %s", errBadRequest, method)
	}
	if err := checkParams(q, allowed); err != nil {
		return kvQuery{}, err
	}
	var out kvQuery
	out.recurse, out.keys, out.raw = q.Has("recurse"), q.Has("keys"), q.Has("raw")
	out.separator = q.Get("separator")
	uintParam := func(name string, dst *uint64) error {
		if !q.Has(name) {
			return nil
		}
		n, err := strconv.ParseUint(q.Get(name), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s=%q is not an unsigned integer", errBadRequest, name, q.Get(name))
		}
		*dst = n
		return nil
	}
	if err := uintParam("index", &out.index); err != nil {
		return kvQuery{}, err
	}
	if err := uintParam("flags", &out.flags); err != nil {
		return kvQuery{}, err
	}
	if err := uintParam("cas", &out.cas); err != nil {
		return kvQuery{}, err
	}
	out.hasCAS = q.Has("cas")
	wait, err := parseWait(q.Get("wait"))
	if err != nil {
		return kvQuery{}, err
	}
	out.wait = wait
	out.acquire, out.release = q.Get("acquire"), q.Get("release")
	switch {
	case q.Has("acquire") && q.Has("release"):
		return kvQuery{}, fmt.Errorf("%w: acquire and release together", errBadRequest)
	case (q.Has("acquire") || q.Has("release")) && out.hasCAS:
		return kvQuery{}, fmt.Errorf("%w: cas with acquire or release", errBadRequest)
	case (q.Has("acquire") && out.acquire == "") || (q.Has("release") && out.release == ""):
		return kvQuery{}, fmt.Errorf("%w: acquire and release name a session", errBadRequest)
	case method == "DELETE" && out.recurse && out.hasCAS:
		return kvQuery{}, fmt.Errorf("%w: cas with recurse: a tree is not deleted on one index", errBadRequest)
	}
	return out, nil
}

// parseWait reads a blocking query's wait ("10s", "5m"; Consul's form):
// empty is DefaultBlockingWait, and a wait past kv.MaxWatchWait is cut to
// it, as Consul cuts its own at 10 minutes.
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return DefaultBlockingWait, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: wait=%q is not a duration like 30s or 5m", errBadRequest, s)
	}
	if d == 0 {
		return DefaultBlockingWait, nil
	}
	return kv.WatchWait(d), nil
}
