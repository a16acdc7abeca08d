package etcdapi

import (
	"strings"
	"testing"
)

// FuzzParseHoldKey: Unlock's key parser accepts exactly the keys holdKey
// makes (a name, '/', a lease ID in hex, not 0), gives back that name and
// lease, and refuses anything else with errBadRequest, never panicking.
func FuzzParseHoldKey(f *testing.F) {
	for _, s := range []string{"jobs/a/1a", "l/0", "l/01", "l/", "/1", "x", "a/b/c/ffffffffffffffff", "a/10000000000000000", "a/+1", "a/A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		name, lease, err := parseHoldKey(key)
		if err != nil {
			if !strings.Contains(err.Error(), errBadRequest.Error()) {
				t.Fatalf("%q: %v is not a bad request", key, err)
			}
			return
		}
		if name == "" || lease == 0 || holdKey(name, lease) != key {
			t.Fatalf("%q parsed as %q and %x", key, name, lease)
		}
	})
}
