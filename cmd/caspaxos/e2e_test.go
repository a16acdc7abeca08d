package main

import (
	"encoding/base64"
	"net"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// step is one command line and what it must do. Empty stdout/stderr
// expectations mean "nothing"; errLine is a substring of the one error line.
type step struct {
	args    []string
	stdin   string
	code    int
	stdout  string
	stderr  string
	errLine string
}

func runSteps(t *testing.T, env map[string]string, steps []step) {
	t.Helper()
	for _, s := range steps {
		r := runCLI(t, env, s.stdin, s.args...)
		name := strings.Join(s.args, " ")
		if r.code != s.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", name, r.code, s.code, r.stderr)
			continue
		}
		if r.stdout != s.stdout {
			t.Errorf("%s: stdout %q, want %q", name, r.stdout, s.stdout)
		}
		switch {
		case s.errLine != "":
			if !strings.HasPrefix(r.stderr, "caspaxos: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, s.errLine) {
				t.Errorf("%s: stderr %q, want one error line with %q", name, r.stderr, s.errLine)
			}
		case r.stderr != s.stderr:
			t.Errorf("%s: stderr %q, want %q", name, r.stderr, s.stderr)
		}
	}
}

func TestClientCommandsEndToEnd(t *testing.T) {
	b := clientapitest.New()
	env := map[string]string{envEndpoints: serveAddr(t, b)}
	binary := "\xff\x00bin"
	b64 := base64.StdEncoding.EncodeToString([]byte(binary))
	runSteps(t, env, []step{
		{args: []string{"get", "k"}, code: 3, errLine: `get "k": key not found`},
		{args: []string{"put", "k", "hello"}, stdout: "1\n"},
		{args: []string{"get", "k"}, stdout: "hello"},
		{args: []string{"get", "-v", "k"}, stdout: "hello", stderr: "version 1\n"},
		{args: []string{"-o", "json", "get", "k"}, stdout: `{"key":"k","value":"hello","version":1}` + "\n"},
		{args: []string{"put", "k", "-"}, stdin: binary, stdout: "2\n"},
		{args: []string{"get", "k"}, stdout: binary},
		{args: []string{"get", "k", "--output", "json"}, stdout: `{"key":"k","value":"` + b64 + `","encoding":"base64","version":2}` + "\n"},
		{args: []string{"put", "--if-version", "1", "k", "x"}, code: 4, errLine: `put "k": version mismatch: the key's current version is 2`},
		{args: []string{"put", "--if-version", "2", "k", "x"}, stdout: "3\n"},
		{args: []string{"put", "--if-version", "0", "fresh", "v"}, stdout: "1\n"},
		{args: []string{"put", "--if-version", "0", "fresh", "v"}, code: 4, errLine: "current version is 1"},
		{args: []string{"put", "-o", "json", "--", "neg", "-5"}, stdout: `{"key":"neg","version":1}` + "\n"},
		{args: []string{"create", "k", "y"}, code: 4, errLine: `create "k": version mismatch`},
		{args: []string{"create", "-o", "json", "c", "-"}, stdin: "from stdin", stdout: `{"key":"c","version":1}` + "\n"},
		{args: []string{"get", "c"}, stdout: "from stdin"},
		{args: []string{"cas", "k", "3", "z"}, stdout: "4\n"},
		{args: []string{"cas", "k", "3", "z"}, code: 4, errLine: `cas "k": version mismatch: the key's current version is 4`},
		{args: []string{"cas", "absent", "0", "new"}, stdout: "1\n"},
		{args: []string{"cas", "-o", "json", "absent", "1", "newer"}, stdout: `{"key":"absent","version":2}` + "\n"},
		{args: []string{"incr", "n"}, stdout: "1\n"},
		{args: []string{"incr", "n", "10"}, stdout: "11\n"},
		{args: []string{"incr", "--", "n", "-20"}, stdout: "-9\n"},
		{args: []string{"incr", "-v", "n"}, stdout: "-8\n", stderr: "version 4\n"},
		{args: []string{"incr", "-o", "json", "n", "0"}, stdout: `{"key":"n","value":-8,"version":5}` + "\n"},
		{args: []string{"incr", "k"}, code: 8, errLine: `incr "k": the value is not a decimal integer`},
		{args: []string{"put", "max", "9223372036854775807"}, stdout: "1\n"},
		{args: []string{"incr", "max"}, code: 8, errLine: `incr "max": the result would overflow int64`},
		{args: []string{"del", "--if-version", "99", "k"}, code: 4, errLine: "current version is 4"},
		{args: []string{"del", "k"}, stdout: "5\n"},
		{args: []string{"del", "k"}, code: 3, errLine: `del "k": key not found`},
		{args: []string{"get", "k"}, code: 3, errLine: "key not found"},
		{args: []string{"del", "--if-version", "5", "k"}, code: 4, errLine: "the key does not exist"},
		{args: []string{"create", "k", "again"}, stdout: "6\n"},
		{args: []string{"delete", "-o", "json", "--if-version", "6", "k"}, stdout: `{"key":"k","version":7}` + "\n"},
		{args: []string{"put", "big", "-"}, stdin: strings.Repeat("x", kv.DefaultLimits.MaxValueBytes+1), code: 1, errLine: "too large"},
		{args: []string{"members"}, stdout: "" +
			"NAME  ID  PEER ADDRESS    CLIENT ADDRESS  REACHABLE\n" +
			"n1    1   127.0.0.1:7080  127.0.0.1:7070  yes\n" +
			"n2    2   127.0.0.1:7081  -               no\n"},
		{args: []string{"members", "-o", "json"}, stdout: `{"config_version":1,"members":[` +
			`{"name":"n1","id":1,"peer_addr":"127.0.0.1:7080","client_addr":"127.0.0.1:7070","reachable":true},` +
			`{"name":"n2","id":2,"peer_addr":"127.0.0.1:7081","reachable":false}]}` + "\n"},
		{args: []string{"health"}, stdout: "healthy\n"},
		{args: []string{"health", "-o", "json"}, stdout: `{"healthy":true}` + "\n"},
	})
}

func TestClientCommandsWhenTheClusterFails(t *testing.T) {
	b := clientapitest.New()
	env := map[string]string{envEndpoints: serveAddr(t, b)}
	b.SetFail(kv.ErrNoQuorum)
	runSteps(t, env, []step{
		{args: []string{"put", "k", "v"}, code: 5, errLine: `put "k": no quorum: the cluster could not apply the request; nothing changed`},
		{args: []string{"get", "k"}, code: 5, errLine: "no quorum"},
		{args: []string{"health"}, code: 5, errLine: "health: unhealthy: reaches 1 of 3 acceptors"},
		{args: []string{"health", "-o", "json"}, code: 5, stdout: `{"healthy":false,"message":"reaches 1 of 3 acceptors"}` + "\n",
			errLine: "health: unhealthy"},
	})
	b.SetFail(kv.ErrUnknownOutcome)
	runSteps(t, env, []step{
		{args: []string{"incr", "n"}, code: 6, errLine: `incr "n": outcome unknown: the write may or may not have taken effect`},
		{args: []string{"del", "k"}, code: 6, errLine: "outcome unknown"},
	})
	dead := deadAddr(t)
	runSteps(t, map[string]string{envEndpoints: dead}, []step{
		{args: []string{"--timeout", "2s", "get", "k"}, code: 7, errLine: `get "k": no endpoint reachable`},
		{args: []string{"--timeout", "2s", "put", "k", "v"}, code: 7, errLine: "no endpoint reachable"},
		{args: []string{"--timeout", "2s", "members"}, code: 7, errLine: "members: no endpoint reachable"},
		{args: []string{"--timeout", "2s", "health"}, code: 7, errLine: "health: no endpoint reachable"},
	})
	// A dead endpoint before a live one: reads and writes fail over.
	b.SetFail(nil)
	runSteps(t, map[string]string{envEndpoints: dead + "," + env[envEndpoints]}, []step{
		{args: []string{"put", "k", "v"}, stdout: "1\n"},
		{args: []string{"get", "k"}, stdout: "v"},
	})
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func serveAddr(t *testing.T, b *clientapitest.Backend) string {
	addr, _ := clientapitest.ServeGRPC(t, b)
	return addr
}

// ls pages through a prefix with the Go client's iterator.
func TestLs(t *testing.T) {
	b := clientapitest.New()
	env := map[string]string{envEndpoints: serveAddr(t, b)}
	runSteps(t, env, []step{
		{args: []string{"put", "app/a", "1"}, stdout: "1\n"},
		{args: []string{"put", "app/b", "two\tlines\n"}, stdout: "1\n"},
		{args: []string{"put", "other", "3"}, stdout: "1\n"},
		{args: []string{"del", "app/a"}, stdout: "2\n"},
		{args: []string{"put", "app/c", "3"}, stdout: "1\n"},
		{args: []string{"ls", "--page-size", "1", "app/"}, stdout: "app/b\t\"two\\tlines\\n\"\napp/c\t3\n"},
		{args: []string{"ls", "--keys"}, stdout: "app/b\napp/c\nother\n"},
		{args: []string{"ls", "-o", "json", "app/c"}, stdout: `{"key":"app/c","value":"3","version":1}` + "\n"},
	})
}
